"""The HL7 Continuous Glucose Monitoring IG (STU 1, 1.0.0, FHIR R4): profiles and LOINC codes.

Canonical base http://hl7.org/fhir/uv/cgm; codes as the published 1.0.0 examples carry them.
"""

from __future__ import annotations

IG = "http://hl7.org/fhir/uv/cgm"
_SD = f"{IG}/StructureDefinition"

PROFILE_SUMMARY = f"{_SD}/cgm-summary"
PROFILE_MEAN_MASS = f"{_SD}/cgm-summary-mean-glucose-mass-per-volume"
PROFILE_MEAN_MOLAR = f"{_SD}/cgm-summary-mean-glucose-moles-per-volume"
PROFILE_TIMES_IN_RANGES = f"{_SD}/cgm-summary-times-in-ranges"
PROFILE_GMI = f"{_SD}/cgm-summary-gmi"
PROFILE_CV = f"{_SD}/cgm-summary-coefficient-of-variation"
PROFILE_DAYS_OF_WEAR = f"{_SD}/cgm-summary-days-of-wear"
PROFILE_SENSOR_ACTIVE = f"{_SD}/cgm-summary-sensor-active-percentage"
PROFILE_SENSOR_READING_MASS = f"{_SD}/cgm-sensor-reading-mass-per-volume"
PROFILE_SENSOR_READING_MOLAR = f"{_SD}/cgm-sensor-reading-moles-per-volume"
PROFILE_DEVICE = f"{_SD}/cgm-device"
PROFILE_SUBMISSION_BUNDLE = f"{_SD}/cgm-data-submission-bundle"

# LOINC
SUMMARY = "107931-8"
MEAN_MASS = "97507-8"
MEAN_MOLAR = "105273-7"
TIMES_IN_RANGES = "106793-3"
TIME_VERY_LOW = "104642-4"  # < 54 mg/dL
TIME_LOW = "104641-6"  # 54-69 mg/dL
TIME_TARGET = "97510-2"  # 70-180 mg/dL
TIME_HIGH = "104640-8"  # 181-250 mg/dL
TIME_VERY_HIGH = "104639-0"  # > 250 mg/dL
GMI = "97506-0"
CV = "104638-2"
DAYS_OF_WEAR = "104636-6"
SENSOR_ACTIVE = "104637-4"
SENSOR_READING_MASS = "99504-3"
SENSOR_READING_MOLAR = "105272-9"

#: the consensus band (telehealth.glucose_ranges.Band value) -> its times-in-ranges component
RANGE_COMPONENTS = {
    "very_low": TIME_VERY_LOW,
    "low": TIME_LOW,
    "target": TIME_TARGET,
    "high": TIME_HIGH,
    "very_high": TIME_VERY_HIGH,
}

#: every summary LOINC with its profile, in the order the summary lists its members
MEMBER_PROFILES = {
    MEAN_MASS: PROFILE_MEAN_MASS,
    MEAN_MOLAR: PROFILE_MEAN_MOLAR,
    TIMES_IN_RANGES: PROFILE_TIMES_IN_RANGES,
    GMI: PROFILE_GMI,
    CV: PROFILE_CV,
    DAYS_OF_WEAR: PROFILE_DAYS_OF_WEAR,
    SENSOR_ACTIVE: PROFILE_SENSOR_ACTIVE,
}
