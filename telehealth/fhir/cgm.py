"""The CGM summary and the submission bundle as the HL7 CGM IG (STU 1) shapes them.

The values are the dashboard's glucose summary (telehealth.storage.glucose) unchanged:
times in the five consensus ranges, mean glucose in mg/dL and mmol/L, GMI, CV, days with CGM
data as "days of wear" and the share of expected CGM readings present as "sensor active
percentage". A member whose value cannot be computed (no readings; CV from a single one)
carries a `dataAbsentReason` instead of a value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from uuid import UUID

from fhir.resources.R4B.observation import Observation

from telehealth.fhir import cgm_codes as ig
from telehealth.fhir.base import (
    DATA_ABSENT_REASON,
    DEVICE_ID_SYSTEM,
    LOINC,
    NHS_NUMBER,
    OBSERVATION_CATEGORY,
    READING_ID_SYSTEM,
    check_bundle_envelope,
    coding,
    instant,
    quantity,
    stable_id,
    validated,
)
from telehealth.fhir.resources import check_observations, device_fhir_id, observation, reading_key

DISPLAY = {
    ig.SUMMARY: "CGM summary panel",
    ig.MEAN_MASS: "Mean glucose [Mass/volume] in Interstitial fluid during reporting period",
    ig.MEAN_MOLAR: "Mean glucose [Moles/volume] in Interstitial fluid during reporting period",
    ig.TIMES_IN_RANGES: "CGM times in ranges panel",
    ig.TIME_VERY_LOW: "Time in very low range (< 54 mg/dL)",
    ig.TIME_LOW: "Time in low range (54-69 mg/dL)",
    ig.TIME_TARGET: "Time in target range (70-180 mg/dL)",
    ig.TIME_HIGH: "Time in high range (181-250 mg/dL)",
    ig.TIME_VERY_HIGH: "Time in very high range (> 250 mg/dL)",
    ig.GMI: "Glucose management indicator",
    ig.CV: "Coefficient of variation of glucose",
    ig.DAYS_OF_WEAR: "Days CGM worn",
    ig.SENSOR_ACTIVE: "CGM sensor active time (% of expected readings present)",
}


@dataclass(frozen=True)
class Period:
    """A summary's period: the patient's calendar days `first`..`last` (both included)."""

    patient_id: UUID
    first: date
    last: date
    computed_at: datetime


def _loinc(code: str) -> dict[str, Any]:
    return {"coding": [coding(LOINC, code, DISPLAY.get(code))]}


def _url(resource_id: str) -> str:
    return f"urn:uuid:{resource_id}"


def _base(period: Period, code: str, subject: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": stable_id("cgm", period.patient_id, period.first, period.last, period.computed_at, code),
        "meta": {"profile": [ig.MEMBER_PROFILES.get(code, ig.PROFILE_SUMMARY)]},
        "status": "final",
        "category": [{"coding": [coding(OBSERVATION_CATEGORY, "laboratory")]}],
        "code": _loinc(code),
        "subject": {"reference": subject},
        "effectivePeriod": {"start": period.first.isoformat(), "end": period.last.isoformat()},
        "issued": instant(period.computed_at),
    }


def _valued(resource: dict[str, Any], value: float | None, unit: str, ucum: str) -> dict[str, Any]:
    if value is None:
        resource["dataAbsentReason"] = {
            "coding": [coding(DATA_ABSENT_REASON, "not-applicable")],
            "text": "not computable from the period's CGM readings (none, or one for CV)",
        }
    else:
        resource["valueQuantity"] = quantity(value, unit, ucum)
    return resource


def summary_members(
    summary: Mapping[str, Any], period: Period, *, subject: str | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """The CGM summary Observation first, then its seven members, as (fullUrl, resource)."""
    subject = subject or f"Patient/{period.patient_id}"
    members = [
        _valued(_base(period, ig.MEAN_MASS, subject), summary["mean_mg_dl"], "mg/dl", "mg/dL"),
        _valued(_base(period, ig.MEAN_MOLAR, subject), summary["mean_mmol_l"], "mmol/l", "mmol/L"),
        _times_in_ranges(summary, _base(period, ig.TIMES_IN_RANGES, subject)),
        _valued(_base(period, ig.GMI, subject), summary["gmi_pct"], "%", "%"),
        _valued(_base(period, ig.CV, subject), summary["cv_pct"], "%", "%"),
        _valued(_base(period, ig.DAYS_OF_WEAR, subject), summary["days_with_data"], "days", "d"),
        _valued(_base(period, ig.SENSOR_ACTIVE, subject), summary["data_sufficiency_pct"], "%", "%"),
    ]
    head = _base(period, ig.SUMMARY, subject)
    head["hasMember"] = [{"reference": _url(m["id"])} for m in members]
    out = [head, *members]
    for resource in out:
        validated(Observation, resource)
    return [(_url(r["id"]), r) for r in out]


def _times_in_ranges(summary: Mapping[str, Any], resource: dict[str, Any]) -> dict[str, Any]:
    shares = summary.get("time_in_ranges")
    if not shares:
        return _valued(resource, None, "%", "%")
    resource["component"] = [
        {"code": _loinc(code), "valueQuantity": quantity(shares[band], "%")}
        for band, code in ig.RANGE_COMPONENTS.items()
    ]
    return resource


# ---- the submission bundle ------------------------------------------------------------------


def _entry(resource: dict[str, Any], full_url: str, if_none_exist: str | None) -> dict[str, Any]:
    request: dict[str, str] = {"method": "POST", "url": resource["resourceType"]}
    if if_none_exist:
        request["ifNoneExist"] = if_none_exist
    return {"fullUrl": full_url, "resource": resource, "request": request}


def submission_bundle(
    patient: dict[str, Any],
    devices: Sequence[dict[str, Any]],
    summary: Mapping[str, Any],
    period: Period,
    readings: Sequence[Mapping[str, Any]],
    *,
    mass_units: bool = False,
) -> dict[str, Any]:
    """A `transaction` Bundle in the shape the IG's `$submit-cgm-bundle` takes: the patient
    (created only if no record with the NHS number exists), the CGM devices, the summary with
    its members and the sensor readings, all pointing at each other by their `urn:uuid`
    fullUrls. Devices and readings carry identifiers, so a receiver can skip duplicates. With
    `mass_units` the readings are in mg/dL (the IG's mass profile), else as stored (mmol/L)."""
    patient_url = _url(stable_id("patient", patient["id"]))
    nhs = next(i["value"] for i in patient["identifier"] if i["system"] == NHS_NUMBER)
    entries = [_entry(patient, patient_url, f"identifier={NHS_NUMBER}|{nhs}")]
    device_urls: dict[str, str] = {}
    for d in devices:
        device_id = d["identifier"][0]["value"]
        device_urls[device_id] = _url(stable_id("device", device_id))
        entries.append(_entry(d, device_urls[device_id], f"identifier={DEVICE_ID_SYSTEM}|{device_id}"))
    for url, resource in summary_members(summary, period, subject=patient_url):
        entries.append(_entry(resource, url, None))
    observations = []
    for row in readings:
        ref = device_urls.get(row["device_id"]) or f"Device/{device_fhir_id(row['device_id'])}"
        resource = observation(row, subject=patient_url, device_ref=ref, mass_units=mass_units)
        observations.append(resource)
        entries.append(
            _entry(resource, _url(resource["id"]), f"identifier={READING_ID_SYSTEM}|{reading_key(row)}")
        )
    check_observations(observations)
    bundle = {
        "resourceType": "Bundle",
        "meta": {"profile": [ig.PROFILE_SUBMISSION_BUNDLE]},
        "type": "transaction",
        "timestamp": instant(period.computed_at),
        "entry": entries,
    }
    check_bundle_envelope(bundle)
    return bundle
