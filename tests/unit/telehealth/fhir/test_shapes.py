"""FHIR shapes: every resource the endpoint can serve validates as R4 (fhir.resources) and
carries the HL7 CGM IG's required elements and codes; the IG's own examples pass the checks."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.device import Device
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.patient import Patient
from pydantic_core import to_json

from telehealth.codes import CODES
from telehealth.fhir import cgm, resources
from telehealth.fhir import cgm_codes as ig
from telehealth.fhir.base import outcome
from telehealth.fhir.capability import capability_statement
from tests.fhir_ig import IG_EXAMPLES, conformance_errors

PATIENT = UUID("0b8a4c1e-2f43-4c8e-9a55-3f1c6d2e7a90")
NOW = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)
FLAGS = ("late", "artefact", "implausible", "future")


def _reading(
    code: str = "glucose", *, loinc: str | None = None, quality: tuple[str, ...] = (), **kw: Any
) -> dict[str, Any]:
    spec = CODES[code]
    return {
        "patient_id": PATIENT,
        "measured_at": NOW - timedelta(minutes=5),
        "code": code,
        "value": 6.123456789012345,
        "unit": spec.canonical_unit,
        "loinc": loinc or spec.loinc_for("cgm" if code == "glucose" else None),
        "source": "cgm" if code == "glucose" else None,
        "device_id": "cgm-001",
        "seq": 42,
        "received_at": NOW - timedelta(minutes=4),
        "quality": list(quality),
        "stored_at": NOW - timedelta(minutes=3),
        **kw,
    }


def _summary(**kw: Any) -> dict[str, Any]:
    return {
        "readings": 200,
        "interval_s": 300,
        "expected_readings": 576,
        "days_with_data": 2,
        "in_range_pct": 70.0,
        "below_3_9_pct": 15.0,
        "below_3_0_pct": 5.0,
        "above_10_pct": 15.0,
        "above_13_9_pct": 5.0,
        "time_in_ranges": {"very_low": 5.0, "low": 10.0, "target": 70.0, "high": 10.0, "very_high": 5.0},
        "mean_mmol_l": 7.318,
        "mean_mg_dl": 7.318 * 18.01559,
        "sd_mmol_l": 2.9,
        "cv_pct": 39.62831858407079,
        "gmi_pct": 3.31 + 0.02392 * 7.318 * 18.01559,
        "data_sufficiency_pct": 34.72222222222222,
        "sufficient": False,
        **kw,
    }


PERIOD = cgm.Period(PATIENT, date(2026, 12, 6), date(2026, 12, 7), NOW)


# ---- the IG's examples check the checks -------------------------------------------------------


@pytest.mark.parametrize("name", sorted(IG_EXAMPLES))
def test_the_igs_examples_pass_the_profile_checks(name: str) -> None:
    example = IG_EXAMPLES[name]
    assert conformance_errors(example) == []
    model = Device if example["resourceType"] == "Device" else Observation
    model.model_validate(example)


def test_the_profile_checks_catch_what_an_example_lacks() -> None:
    wrong_unit = json.loads(json.dumps(IG_EXAMPLES["cgmSensorReadingMolesPerVolumeExample"]))
    wrong_unit["valueQuantity"]["code"] = "mg/dL"
    assert conformance_errors(wrong_unit)
    four_ranges = json.loads(json.dumps(IG_EXAMPLES["cgmSummaryTimesInRangesExample"]))
    four_ranges["component"].pop()
    assert any("104639-0" in e for e in conformance_errors(four_ranges))
    no_period = json.loads(json.dumps(IG_EXAMPLES["cgmSummaryGMIExample"]))
    del no_period["effectivePeriod"]
    assert conformance_errors(no_period)


# ---- Patient, Device, Observation -------------------------------------------------------------


@pytest.mark.parametrize("sex", ["female", "male", "other", "unknown"])
def test_patient(sex: str) -> None:
    row = {
        "id": PATIENT,
        "nhs_number": "9434765919",
        "name": "Ada Lovelace",
        "birth_date": date(1960, 2, 1),
        "sex": sex,
    }
    out = resources.patient(row)
    Patient.model_validate(out)
    assert out["id"] == str(PATIENT) and out["gender"] == sex and out["birthDate"] == "1960-02-01"
    assert {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765919"} in out["identifier"]


@pytest.mark.parametrize(
    ("kind", "revoked", "state", "battery"),
    list(
        itertools.product(
            ["cgm", "glucometer", "oximeter", "uploader"],
            [False, True],
            [None, "online", "offline"],
            [None, 37],
        )
    ),
)
def test_device(kind: str, revoked: bool, state: str | None, battery: int | None) -> None:
    row = {
        "id": "dev-1.a",
        "patient_id": PATIENT,
        "kind": kind,
        "revoked_at": NOW if revoked else None,
        "state": state,
        "battery_pct": battery,
        "expected_interval_s": 300,
    }
    out = resources.device(row)
    Device.model_validate(out)
    assert out["id"] == "dev-1.a"
    assert out["status"] == ("inactive" if revoked else "active")
    assert out["patient"] == {"reference": f"Patient/{PATIENT}"}
    battery_props = [p for p in out["property"] if p["type"]["coding"][0]["code"] == "battery"]
    assert (battery_props[0]["valueQuantity"][0]["value"] if battery_props else None) == battery
    if state and not revoked:
        assert out["statusReason"][0]["coding"][0]["code"] == state
    if kind == "cgm":
        assert conformance_errors(out) == []


def test_a_device_id_fhir_cannot_hold_gets_a_stable_valid_id() -> None:
    derived = resources.device_fhir_id("meter_7")
    assert derived == resources.device_fhir_id("meter_7") != resources.device_fhir_id("meter_8")
    Device.model_validate({"resourceType": "Device", "id": derived})
    assert resources.device_fhir_id("cgm-001") == "cgm-001"


@pytest.mark.parametrize("code", sorted(CODES))
@pytest.mark.parametrize("flags", [(), *((f,) for f in FLAGS), ("late", "artefact")])
def test_every_reading_shape_validates(code: str, flags: tuple[str, ...]) -> None:
    out = resources.observation(_reading(code, quality=flags))
    Observation.model_validate(out)
    assert out["status"] == "final"
    assert [i["coding"][0]["code"] for i in out.get("interpretation", [])] == list(flags)
    assert out["code"]["coding"][0] == {
        "system": "http://loinc.org",
        "code": CODES[code].loinc_for("cgm" if code == "glucose" else None),
        "display": resources.LOINC_DISPLAY[out["code"]["coding"][0]["code"]],
    }
    assert out["valueQuantity"]["system"] == "http://unitsofmeasure.org"
    assert out["effectiveDateTime"] == "2026-12-07T01:55:00Z"
    assert out["meta"]["lastUpdated"] == "2026-12-07T01:57:00Z"


def test_a_cgm_reading_follows_the_igs_sensor_reading_profile() -> None:
    out = resources.observation(_reading())
    assert out["meta"]["profile"] == [ig.PROFILE_SENSOR_READING_MOLAR]
    assert conformance_errors(out) == []
    finger_prick = resources.observation(_reading(loinc="15074-8", source="smbg"))
    assert "profile" not in finger_prick["meta"]
    assert finger_prick["valueQuantity"]["unit"] == "mmol/L"


def test_values_survive_json_exactly() -> None:
    out = resources.observation(_reading())
    assert json.loads(to_json(out))["valueQuantity"]["value"] == 6.123456789012345


def test_ids_are_stable_and_distinct() -> None:
    a, b = resources.observation(_reading()), resources.observation(_reading())
    other = resources.observation(_reading(seq=43))
    assert a["id"] == b["id"] != other["id"]


def test_check_observations_finds_a_broken_shape() -> None:
    good = resources.observation(_reading())
    broken = resources.observation(_reading(quality=("late",)))
    broken["effectiveDateTime"] = "yesterday"
    resources.check_observations([good])
    with pytest.raises(ValueError):
        resources.check_observations([good, broken])


# ---- the CGM summary ------------------------------------------------------------------------


def _by_code(entries: list[tuple[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    return {r["code"]["coding"][0]["code"]: r for _, r in entries}


def test_summary_members_carry_the_dashboards_values_under_the_igs_codes() -> None:
    summary = _summary()
    entries = cgm.summary_members(summary, PERIOD)
    by = _by_code(entries)
    for _, r in entries:
        Observation.model_validate(r)
        assert conformance_errors(r) == [], r["code"]
        assert r["effectivePeriod"] == {"start": "2026-12-06", "end": "2026-12-07"}
    head = entries[0][1]
    assert head["code"]["coding"][0]["code"] == ig.SUMMARY
    assert [m["reference"] for m in head["hasMember"]] == [url for url, _ in entries[1:]]
    assert by[ig.MEAN_MASS]["valueQuantity"]["value"] == summary["mean_mg_dl"]
    assert by[ig.MEAN_MOLAR]["valueQuantity"]["value"] == summary["mean_mmol_l"]
    assert by[ig.GMI]["valueQuantity"]["value"] == summary["gmi_pct"]
    assert by[ig.CV]["valueQuantity"]["value"] == summary["cv_pct"]
    assert by[ig.DAYS_OF_WEAR]["valueQuantity"]["value"] == 2
    assert by[ig.SENSOR_ACTIVE]["valueQuantity"]["value"] == summary["data_sufficiency_pct"]
    ranges = {
        c["code"]["coding"][0]["code"]: c["valueQuantity"]["value"]
        for c in by[ig.TIMES_IN_RANGES]["component"]
    }
    assert ranges == {ig.RANGE_COMPONENTS[b]: v for b, v in summary["time_in_ranges"].items()}


def test_a_summary_without_readings_says_why_values_are_absent() -> None:
    empty = _summary(
        readings=0,
        days_with_data=0,
        time_in_ranges=None,
        mean_mmol_l=None,
        mean_mg_dl=None,
        cv_pct=None,
        gmi_pct=None,
        data_sufficiency_pct=0.0,
    )
    by = _by_code(cgm.summary_members(empty, PERIOD))
    for code in (ig.MEAN_MASS, ig.MEAN_MOLAR, ig.GMI, ig.CV, ig.TIMES_IN_RANGES):
        assert (
            "valueQuantity" not in by[code]
            and by[code]["dataAbsentReason"]["coding"][0]["code"] == "not-applicable"
        )
    assert by[ig.DAYS_OF_WEAR]["valueQuantity"]["value"] == 0


def test_the_submission_bundle_is_a_valid_self_contained_transaction() -> None:
    patient = resources.patient(
        {
            "id": PATIENT,
            "nhs_number": "9434765919",
            "name": "A B",
            "birth_date": date(1960, 2, 1),
            "sex": "female",
        }
    )
    device = resources.device(
        {
            "id": "cgm-001",
            "patient_id": PATIENT,
            "kind": "cgm",
            "revoked_at": None,
            "state": "online",
            "battery_pct": 80,
            "expected_interval_s": 300,
        }
    )
    readings = [
        _reading(seq=k, measured_at=NOW - timedelta(minutes=5 * k), quality=("late",) if k == 2 else ())
        for k in range(1, 4)
    ]
    bundle = cgm.submission_bundle(patient, [device], _summary(), PERIOD, readings)
    Bundle.model_validate(bundle)  # every resource in it, in full
    assert bundle["meta"]["profile"] == [ig.PROFILE_SUBMISSION_BUNDLE]
    assert conformance_errors(bundle) == []
    urls = {e["fullUrl"] for e in bundle["entry"]}
    assert len(urls) == len(bundle["entry"]) == 1 + 1 + 8 + 3
    for e in bundle["entry"]:
        r = e["resource"]
        for ref in [r.get("subject"), r.get("device"), *r.get("hasMember", [])]:
            if ref:
                assert ref["reference"] in urls, ref  # every reference resolves inside the bundle
    assert (
        bundle["entry"][0]["request"]["ifNoneExist"]
        == "identifier=https://fhir.nhs.uk/Id/nhs-number|9434765919"
    )


# ---- capability, errors -----------------------------------------------------------------------


def test_capability_statement() -> None:
    out = capability_statement("http://host/fhir", "0.1.0")
    CapabilityStatement.model_validate(out)
    types = {r["type"] for r in out["rest"][0]["resource"]}
    assert types == {"Patient", "Observation", "Device", "Flag", "Consent"}
    assert out["fhirVersion"] == "4.0.1"
    interactions = {i["code"] for r in out["rest"][0]["resource"] for i in r["interaction"]}
    assert interactions <= {"read", "search-type"}  # read-only


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 500])
def test_errors_are_operation_outcomes(status: int) -> None:
    out = outcome(status, "why")
    OperationOutcome.model_validate(out)
    assert out["issue"][0]["diagnostics"] == "why"


def test_random_patients_get_distinct_summary_ids() -> None:
    one = cgm.summary_members(_summary(), PERIOD)
    two = cgm.summary_members(_summary(), cgm.Period(uuid4(), PERIOD.first, PERIOD.last, NOW))
    assert {u for u, _ in one}.isdisjoint(u for u, _ in two)


@pytest.mark.parametrize(("stored", "shown"), [(120 / 18.01559, 120.0), (6.7, 120.7), (2.2, 39.6)])
def test_a_cgm_reading_in_mass_units_follows_the_igs_mass_profile(stored: float, shown: float) -> None:
    out = resources.observation(_reading(value=stored), mass_units=True)
    Observation.model_validate(out)
    assert out["meta"]["profile"] == [ig.PROFILE_SENSOR_READING_MASS]
    assert out["code"]["coding"][0]["code"] == ig.SENSOR_READING_MASS
    assert out["valueQuantity"] == {
        "value": shown,
        "unit": "mg/dl",
        "system": "http://unitsofmeasure.org",
        "code": "mg/dL",
    }
    assert conformance_errors(out) == []
    # the same reading: same id and identifier whichever unit it is served in
    assert out["id"] == resources.observation(_reading(value=stored))["id"]
    # only CGM glucose changes unit
    pulse = resources.observation(_reading("pulse"), mass_units=True)
    assert pulse["valueQuantity"]["code"] == "/min"


@pytest.mark.parametrize("status", ["open", "acknowledged", "resolved"])
@pytest.mark.parametrize("device", [None, "oxi_1"])
def test_alerts_are_flags(status: str, device: str | None) -> None:
    from fhir.resources.R4B.flag import Flag

    from telehealth.fhir.alerts import flag

    row = {
        "id": 7,
        "patient_id": PATIENT,
        "rule": "spo2_low",
        "severity": "urgent",
        "status": status,
        "message": "SpO2 86 % below 88 %",
        "device_id": device,
        "opened_at": NOW - timedelta(hours=1),
        "resolved_at": NOW if status == "resolved" else None,
    }
    out = flag(row)
    Flag.model_validate(out)
    assert out["status"] == ("inactive" if status == "resolved" else "active")
    assert out["period"].get("end") == ("2026-12-07T02:00:00Z" if status == "resolved" else None)
    assert {c["coding"][0]["code"] for c in out["category"]} == {"clinical", "urgent", status}
    assert out["code"]["text"] == "SpO2 86 % below 88 %"
    assert ("author" in out) == (device is not None)


def test_an_empty_search_has_no_entry_array() -> None:
    from telehealth.fhir.base import searchset

    empty = searchset([], self_url="http://host/fhir/Observation?patient=x", next_url=None, now=NOW)
    assert "entry" not in empty
    Bundle.model_validate(empty)
