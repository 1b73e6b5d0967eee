"""Patient, Device and reading Observations as FHIR R4 JSON, from the stored rows.

A reading's quality flags (late, artefact, implausible, future) are `interpretation` codings
in `urn:telehealth:quality`; its status stays `final`, since the stored value is exactly what
the device sent and is never revised. CGM glucose follows the HL7 CGM IG's sensor reading
profile (molar units); see docs/fhir.md for the whole mapping.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from fhir.resources.R4B.device import Device
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.patient import Patient

from telehealth.codes import MG_DL_PER_MMOL_L
from telehealth.fhir import cgm_codes
from telehealth.fhir.base import (
    CODE_SYSTEM,
    DEVICE_ID_SYSTEM,
    DEVICE_KIND_SYSTEM,
    DEVICE_PROPERTY_SYSTEM,
    DEVICE_STATUS_REASON,
    LOINC,
    NHS_NUMBER,
    OBSERVATION_CATEGORY,
    PATIENT_ID_SYSTEM,
    QUALITY_SYSTEM,
    READING_ID_SYSTEM,
    coding,
    instant,
    quantity,
    stable_id,
    validated,
)

#: LOINC display names of the codes the stream stores
LOINC_DISPLAY = {
    "15074-8": "Glucose [Moles/volume] in Blood",
    "105272-9": "Glucose [Moles/volume] in Interstitial fluid",
    "99504-3": "Glucose [Mass/volume] in Interstitial fluid",
    "59408-5": "Oxygen saturation in Arterial blood by Pulse oximetry",
    "8867-4": "Heart rate",
}
#: UCUM code of each canonical unit (the labels are the same but for CGM's, see below)
UCUM_CODE = {"mmol/L": "mmol/L", "%": "%", "/min": "/min"}
CATEGORY = {"glucose": "laboratory", "spo2": "vital-signs", "pulse": "vital-signs"}

QUALITY_DISPLAY = {
    "late": "received later than the stream's lateness bound; never alarmed on live",
    "artefact": "motion or poor-signal artefact (oximetry); stored, never alarmed on",
    "implausible": "outside the plausible range for the code; left out of summaries",
    "future": "timestamped ahead of the receiving clock; left out of summaries",
}
KIND_DISPLAY = {
    "cgm": "continuous glucose monitor",
    "glucometer": "blood glucose meter",
    "oximeter": "pulse oximeter",
    "uploader": "Nightscout uploader app",
}

# ---- Patient --------------------------------------------------------------------------------


def patient(row: Mapping[str, Any]) -> dict[str, Any]:
    """A patient row (id, nhs_number, name, birth_date, sex) as a FHIR Patient."""
    resource = {
        "resourceType": "Patient",
        "id": str(row["id"]),
        "identifier": [
            {"system": NHS_NUMBER, "value": row["nhs_number"]},
            {"system": PATIENT_ID_SYSTEM, "value": str(row["id"])},
        ],
        "active": True,
        "name": [{"text": row["name"]}],
        "gender": row["sex"],  # female | male | other | unknown: FHIR's AdministrativeGender
        "birthDate": row["birth_date"].isoformat(),
    }
    return validated(Patient, resource)


# ---- Device ---------------------------------------------------------------------------------

_FHIR_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-.")


def device_fhir_id(device_id: str) -> str:
    """The device's own id where FHIR allows it (letters, digits, `-`, `.`); otherwise (an id
    with `_`) a stable derived one, so ids never collide and never change."""
    if device_id and len(device_id) <= 64 and set(device_id) <= _FHIR_ID_CHARS:
        return device_id
    return "d" + stable_id("device", device_id).replace("-", "")


def device(row: Mapping[str, Any]) -> dict[str, Any]:
    """A device row (id, patient_id, kind, revoked_at, state, battery_pct, expected_interval_s)."""
    kind = row["kind"]
    properties: list[dict[str, Any]] = [
        {
            "type": {
                "coding": [coding(DEVICE_PROPERTY_SYSTEM, "expected-interval")],
                "text": "expected interval between readings",
            },
            "valueQuantity": [quantity(row["expected_interval_s"], "s")],
        }
    ]
    if row.get("battery_pct") is not None:
        properties.append(
            {
                "type": {"coding": [coding(DEVICE_PROPERTY_SYSTEM, "battery")], "text": "battery charge"},
                "valueQuantity": [quantity(row["battery_pct"], "%")],
            }
        )
    resource: dict[str, Any] = {
        "resourceType": "Device",
        "id": device_fhir_id(row["id"]),
        "identifier": [{"system": DEVICE_ID_SYSTEM, "value": row["id"]}],
        "status": "inactive" if row.get("revoked_at") is not None else "active",
        "deviceName": [{"name": f"{KIND_DISPLAY.get(kind, kind)} {row['id']}", "type": "user-friendly-name"}],
        "type": {"coding": [coding(DEVICE_KIND_SYSTEM, kind, KIND_DISPLAY.get(kind))]},
        "patient": {"reference": f"Patient/{row['patient_id']}"},
        "property": properties,
    }
    if kind == "cgm":
        resource["meta"] = {"profile": [cgm_codes.PROFILE_DEVICE]}
    if row.get("state") in ("online", "offline") and row.get("revoked_at") is None:
        resource["statusReason"] = [{"coding": [coding(DEVICE_STATUS_REASON, row["state"])]}]
    return validated(Device, resource)


# ---- Observation ----------------------------------------------------------------------------


def reading_key(row: Mapping[str, Any]) -> str:
    return f"{row['device_id']}/{row['seq']}/{row['code']}"


def is_cgm(row: Mapping[str, Any]) -> bool:
    return bool(row["code"] == "glucose" and row["loinc"] == cgm_codes.SENSOR_READING_MOLAR)


def observation(
    row: Mapping[str, Any],
    *,
    subject: str | None = None,
    device_ref: str | None = None,
    mass_units: bool = False,
) -> dict[str, Any]:
    """One stored reading (patient_id, measured_at, code, value, unit, loinc, device_id, seq,
    received_at, quality, stored_at) as an Observation; `subject` and `device_ref` override the
    references (a transaction bundle points at its own entries). With `mass_units` a CGM reading
    follows the IG's mg/dL profile (value to 0.1 mg/dL, as converted from the stored mmol/L).
    Not validated here: a page holds thousands, see `check_observations`."""
    loinc = row["loinc"]
    cgm = is_cgm(row)
    unit = row["unit"]
    mass = cgm and mass_units
    if mass:
        loinc = cgm_codes.SENSOR_READING_MASS
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": stable_id("reading", reading_key(row)),
        "meta": {"lastUpdated": instant(row.get("stored_at") or row["received_at"])},
        "identifier": [{"system": READING_ID_SYSTEM, "value": reading_key(row)}],
        "status": "final",
        "category": [{"coding": [coding(OBSERVATION_CATEGORY, CATEGORY.get(row["code"], "laboratory"))]}],
        "code": {
            "coding": [coding(LOINC, loinc, LOINC_DISPLAY.get(loinc)), coding(CODE_SYSTEM, row["code"])],
        },
        "subject": {"reference": subject or f"Patient/{row['patient_id']}"},
        "effectiveDateTime": instant(row["measured_at"]),
        "issued": instant(row["received_at"]),
        # the IG's pattern for CGM readings labels the unit "mmol/l"; the UCUM code is the same
        "valueQuantity": (
            quantity(round(row["value"] * MG_DL_PER_MMOL_L, 1), "mg/dl", "mg/dL")
            if mass
            else quantity(row["value"], "mmol/l" if cgm else unit, UCUM_CODE.get(unit, unit))
        ),
        "device": {"reference": device_ref or f"Device/{device_fhir_id(row['device_id'])}"},
    }
    if cgm:
        profile = cgm_codes.PROFILE_SENSOR_READING_MASS if mass else cgm_codes.PROFILE_SENSOR_READING_MOLAR
        resource["meta"]["profile"] = [profile]
    flags = list(row.get("quality") or ())
    if flags:
        resource["interpretation"] = [
            {"coding": [coding(QUALITY_SYSTEM, f, QUALITY_DISPLAY.get(f))], "text": f} for f in flags
        ]
    return resource


def check_observations(resources: Iterable[dict[str, Any]]) -> None:
    """Validate the first Observation of each shape (code, profile, flags) in `resources`: the
    rest differ only in values of the same types, and validating every one would cost about
    half a millisecond per reading (decision 0050)."""
    seen: set[tuple[Any, ...]] = set()
    for r in resources:
        shape = (
            r["code"]["coding"][0]["code"],
            tuple(r["meta"].get("profile", ())),
            tuple(i["text"] for i in r.get("interpretation", ())),
        )
        if shape not in seen:
            seen.add(shape)
            Observation.model_validate(r)
