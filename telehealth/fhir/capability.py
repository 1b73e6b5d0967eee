"""The CapabilityStatement served at `/fhir/metadata`: exactly what the endpoint supports."""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B.capabilitystatement import CapabilityStatement

from telehealth.fhir import cgm_codes as ig
from telehealth.fhir.base import FHIR_VERSION, validated

#: the date of this statement's content (changes when what is supported changes)
DATE = "2026-12-07"
#: most entries a search page holds
MAX_COUNT = 1000
DEFAULT_COUNT = 100


def _param(name: str, kind: str, doc: str) -> dict[str, str]:
    return {"name": name, "type": kind, "documentation": doc}


def capability_statement(base: str, version: str) -> dict[str, Any]:
    """What a FHIR client may ask of the server at `base` (read-only)."""
    observation_profiles = [
        ig.PROFILE_SENSOR_READING_MOLAR,
        ig.PROFILE_SENSOR_READING_MASS,
        ig.PROFILE_SUMMARY,
        *ig.MEMBER_PROFILES.values(),
    ]
    resource = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": DATE,
        "publisher": "Telehealth stream",
        "kind": "instance",
        "software": {"name": "telehealth-stream", "version": version},
        "implementation": {"description": "Read-only FHIR R4 view of the telehealth stream", "url": base},
        "fhirVersion": FHIR_VERSION,
        "format": ["json"],
        "rest": [
            {
                "mode": "server",
                "documentation": "Read-only. Every request but this statement needs the same bearer "
                "token as the JSON API: clinicians see their care teams' patients, a patient themself.",
                "security": {
                    "service": [{"text": "Bearer token (POST /api/v1/auth/token)"}],
                    "description": "Answers are scoped by role and care team; a patient outside "
                    "them is answered 404 like a missing one, and every read is audited.",
                },
                "resource": [
                    {
                        "type": "Patient",
                        "interaction": [{"code": "read"}, {"code": "search-type"}],
                        "searchParam": [
                            _param(
                                "identifier",
                                "token",
                                "required: https://fhir.nhs.uk/Id/nhs-number|<number> or "
                                "urn:telehealth:patient|<id>; only patients in your care are found",
                            )
                        ],
                        "operation": [
                            {
                                "name": "cgm-summary",
                                "definition": f"{base}/OperationDefinition/cgm-summary",
                                "documentation": "GET Patient/[id]/$cgm-summary?days=N (or start=&end= "
                                "dates): the CGM summary and its members (HL7 CGM IG) as a collection",
                            },
                            {
                                "name": "cgm-bundle",
                                "definition": f"{base}/OperationDefinition/cgm-bundle",
                                "documentation": "GET Patient/[id]/$cgm-bundle?days=N (unit=mg/dL, "
                                "readings=false): a transaction Bundle in the IG's $submit-cgm-bundle "
                                "shape, to post to a clinical system",
                            },
                        ],
                    },
                    {
                        "type": "Observation",
                        "supportedProfile": observation_profiles,
                        "interaction": [{"code": "search-type"}],
                        "searchParam": [
                            _param("patient", "reference", "required: the patient's id"),
                            _param("subject", "reference", "same as patient"),
                            _param("code", "token", "LOINC or urn:telehealth:code, comma = or"),
                            _param("date", "date", "effective time; eq, ge, gt, le, lt; repeat to AND"),
                            _param("_lastUpdated", "date", "when the reading was stored; same prefixes"),
                            _param("_count", "number", f"page size, 1-{MAX_COUNT} (default {DEFAULT_COUNT})"),
                        ],
                    },
                    {
                        "type": "Device",
                        "supportedProfile": [ig.PROFILE_DEVICE],
                        "interaction": [{"code": "read"}, {"code": "search-type"}],
                        "searchParam": [_param("patient", "reference", "required: the patient's id")],
                    },
                    {
                        "type": "Flag",
                        "interaction": [{"code": "search-type"}],
                        "documentation": "alerts: active while open or acknowledged; care team only",
                        "searchParam": [
                            _param("patient", "reference", "required: the patient's id"),
                            _param("subject", "reference", "same as patient"),
                            _param("status", "token", "active or inactive"),
                            _param("_count", "number", f"page size, 1-{MAX_COUNT} (default {DEFAULT_COUNT})"),
                        ],
                    },
                    {
                        "type": "Consent",
                        "interaction": [{"code": "search-type"}],
                        "searchParam": [_param("patient", "reference", "required: the patient's id")],
                    },
                ],
            }
        ],
    }
    return validated(CapabilityStatement, resource)
