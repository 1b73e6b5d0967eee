"""The HL7 CGM IG (STU 1) profiles' required elements and codes, checked on a resource.

`conformance_errors(resource)` reads the profile the resource claims in `meta.profile` (or the
one given) and lists what it lacks; `IG_EXAMPLES` are the IG's published examples, rewritten
here from their content, which must pass, so the checks themselves are checked.
"""

from __future__ import annotations

from typing import Any

from telehealth.fhir import cgm_codes as ig

UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"

#: profile -> (LOINC code, (unit label, UCUM code) of valueQuantity, or None for no value)
_OBSERVATIONS: dict[str, tuple[str, tuple[str, str] | None]] = {
    ig.PROFILE_SENSOR_READING_MASS: (ig.SENSOR_READING_MASS, ("mg/dl", "mg/dL")),
    ig.PROFILE_SENSOR_READING_MOLAR: (ig.SENSOR_READING_MOLAR, ("mmol/l", "mmol/L")),
    ig.PROFILE_SUMMARY: (ig.SUMMARY, None),
    ig.PROFILE_MEAN_MASS: (ig.MEAN_MASS, ("mg/dl", "mg/dL")),
    ig.PROFILE_MEAN_MOLAR: (ig.MEAN_MOLAR, ("mmol/l", "mmol/L")),
    ig.PROFILE_TIMES_IN_RANGES: (ig.TIMES_IN_RANGES, None),
    ig.PROFILE_GMI: (ig.GMI, ("%", "%")),
    ig.PROFILE_CV: (ig.CV, ("%", "%")),
    ig.PROFILE_DAYS_OF_WEAR: (ig.DAYS_OF_WEAR, ("days", "d")),
    ig.PROFILE_SENSOR_ACTIVE: (ig.SENSOR_ACTIVE, ("%", "%")),
}
_RANGES = (ig.TIME_VERY_LOW, ig.TIME_LOW, ig.TIME_TARGET, ig.TIME_HIGH, ig.TIME_VERY_HIGH)


def _has_loinc(concept: dict[str, Any] | None, code: str) -> bool:
    return any(c.get("system") == LOINC and c.get("code") == code for c in (concept or {}).get("coding", []))


def _quantity_errors(q: dict[str, Any] | None, unit: tuple[str, str], where: str) -> list[str]:
    if not q or "value" not in q:
        return [f"{where}: valueQuantity.value is required"]
    expected = {"unit": unit[0], "system": UCUM, "code": unit[1]}
    return [f"{where}: valueQuantity.{k} must be {v!r}" for k, v in expected.items() if q.get(k) != v]


def conformance_errors(resource: dict[str, Any], profile: str | None = None) -> list[str]:
    profiles = [profile] if profile else resource.get("meta", {}).get("profile", [])
    errors: list[str] = []
    for p in profiles:
        if p == ig.PROFILE_DEVICE:
            names = [n for n in resource.get("deviceName", []) if n.get("type") == "user-friendly-name"]
            if len(names) != 1 or not names[0].get("name"):
                errors.append("cgm-device: one deviceName of type user-friendly-name with a name")
            if not resource.get("identifier"):
                errors.append("cgm-device: identifier 1..*")
            continue
        if p == ig.PROFILE_SUBMISSION_BUNDLE:
            if resource.get("type") != "transaction":
                errors.append("bundle: type must be transaction")
            if not resource.get("timestamp"):
                errors.append("bundle: timestamp 1..1")
            entries = resource.get("entry", [])
            if not entries:
                errors.append("bundle: entry 1..*")
            errors += [
                f"bundle: entry {i} has no request" for i, e in enumerate(entries) if "request" not in e
            ]
            for e in entries:
                errors += conformance_errors(e["resource"])
            continue
        if p not in _OBSERVATIONS:
            errors.append(f"unknown profile {p}")
            continue
        code, unit = _OBSERVATIONS[p]
        name = p.rsplit("/", 1)[1]
        if resource.get("resourceType") != "Observation":
            errors.append(f"{name}: must be an Observation")
        if not _has_loinc(resource.get("code"), code):
            errors.append(f"{name}: code must include LOINC {code}")
        if not resource.get("subject", {}).get("reference"):
            errors.append(f"{name}: subject 1..1")
        if p in (ig.PROFILE_SENSOR_READING_MASS, ig.PROFILE_SENSOR_READING_MOLAR):
            if not resource.get("effectiveDateTime"):
                errors.append(f"{name}: effectiveDateTime 1..1")
        else:
            period = resource.get("effectivePeriod", {})
            if not period.get("start") or not period.get("end"):
                errors.append(f"{name}: effectivePeriod.start and .end 1..1")
        if unit is not None:
            errors += _quantity_errors(resource.get("valueQuantity"), unit, name)
        if p == ig.PROFILE_SUMMARY and len(resource.get("hasMember", [])) < 6:
            errors.append(f"{name}: hasMember 6..*")
        if p == ig.PROFILE_TIMES_IN_RANGES:
            components = resource.get("component", [])
            for c in _RANGES:
                found = [x for x in components if _has_loinc(x.get("code"), c)]
                if len(found) != 1:
                    errors.append(f"{name}: exactly one component {c}")
                else:
                    errors += _quantity_errors(found[0].get("valueQuantity"), ("%", "%"), f"{name}.{c}")
    return errors


# ---- the IG's published examples (1.0.0), rewritten from their content ------------------------


def _observation(code: str, profile: str, **rest: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "meta": {"profile": [profile]},
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "laboratory",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": "Patient/patientExample"},
        **rest,
    }


_MAY = {"effectivePeriod": {"start": "2024-05-01", "end": "2024-05-31"}}


def _q(value: float, unit: str, code: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": code}


IG_EXAMPLES: dict[str, dict[str, Any]] = {
    "cgmSensorReadingMassPerVolumeExample": _observation(
        ig.SENSOR_READING_MASS,
        ig.PROFILE_SENSOR_READING_MASS,
        effectiveDateTime="2024-05-02T10:15:00Z",
        valueQuantity=_q(120, "mg/dl", "mg/dL"),
    ),
    "cgmSensorReadingMolesPerVolumeExample": _observation(
        ig.SENSOR_READING_MOLAR,
        ig.PROFILE_SENSOR_READING_MOLAR,
        effectiveDateTime="2024-05-02T10:30:00Z",
        valueQuantity=_q(6.7, "mmol/l", "mmol/L"),
    ),
    "cgmSummaryMeanGlucoseMassPerVolumeExample": _observation(
        ig.MEAN_MASS, ig.PROFILE_MEAN_MASS, **_MAY, valueQuantity=_q(145, "mg/dl", "mg/dL")
    ),
    "cgmSummaryMeanGlucoseMolesPerVolumeExample": _observation(
        ig.MEAN_MOLAR, ig.PROFILE_MEAN_MOLAR, **_MAY, valueQuantity=_q(8.1, "mmol/l", "mmol/L")
    ),
    "cgmSummaryTimesInRangesExample": _observation(
        ig.TIMES_IN_RANGES,
        ig.PROFILE_TIMES_IN_RANGES,
        **_MAY,
        component=[
            {"code": {"coding": [{"system": LOINC, "code": c}]}, "valueQuantity": _q(v, "%", "%")}
            for c, v in zip(_RANGES, (3, 8, 65, 20, 4), strict=True)
        ],
    ),
    "cgmSummaryGMIExample": _observation(ig.GMI, ig.PROFILE_GMI, **_MAY, valueQuantity=_q(6.8, "%", "%")),
    "cgmSummaryCoefficientOfVariationExample": _observation(
        ig.CV, ig.PROFILE_CV, **_MAY, valueQuantity=_q(34, "%", "%")
    ),
    "cgmSummaryDaysOfWearExample": _observation(
        ig.DAYS_OF_WEAR, ig.PROFILE_DAYS_OF_WEAR, **_MAY, valueQuantity=_q(28, "days", "d")
    ),
    "cgmSummarySensorActivePercentageExample": _observation(
        ig.SENSOR_ACTIVE, ig.PROFILE_SENSOR_ACTIVE, **_MAY, valueQuantity=_q(95, "%", "%")
    ),
    "cgmSummaryExample": _observation(
        ig.SUMMARY,
        ig.PROFILE_SUMMARY,
        **_MAY,
        hasMember=[
            {"reference": f"Observation/{name}"}
            for name in (
                "cgmSummaryMeanGlucoseMassPerVolumeExample",
                "cgmSummaryTimesInRangesExample",
                "cgmSummaryGMIExample",
                "cgmSummaryCoefficientOfVariationExample",
                "cgmSummaryDaysOfWearExample",
                "cgmSummarySensorActivePercentageExample",
            )
        ],
    ),
    "cgmDeviceExample": {
        "resourceType": "Device",
        "meta": {"profile": [ig.PROFILE_DEVICE]},
        "identifier": [{"system": "http://acme.com/devices", "value": "456789"}],
        "deviceName": [{"name": "Acme CGM System", "type": "user-friendly-name"}],
        "serialNumber": "ABC123",
    },
}
