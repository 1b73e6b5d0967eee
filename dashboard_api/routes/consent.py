"""Consent to secondary use: versioned records (plain JSON or FHIR R4 Consent) and decisions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import psycopg
from fastapi import APIRouter, Body, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from fhir.resources.R4B.bundle import Bundle
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dashboard_api.auditing import Audit
from dashboard_api.deps import ConnDep, CurrentUser, SettingsDep
from dashboard_api.routes.access import authorize_patient
from telehealth.codes import CODES
from telehealth.consent import ConsentVersion, Outcome, Provision, Purpose, decide, in_force
from telehealth.consent_fhir import FhirConsentError, from_fhir, to_fhir
from telehealth.storage import consent as store
from telehealth.storage.people import User

router = APIRouter(tags=["consent"])
FHIR_JSON = "application/fhir+json"


class ConsentIn(BaseModel):
    """The JSON form. Unknown fields are refused (422 naming them), never dropped; the
    server-set fields of an exported version may come back and are ignored."""

    model_config = ConfigDict(extra="forbid")

    provisions: list[Provision] = Field(default_factory=list)
    national_opt_out: bool = False
    applies_from: datetime | None = Field(None, description="when it takes effect; default: now")
    version: int | None = Field(None, description="ignored: set by the server")
    recorded_by: str | None = Field(None, description="ignored: set by the server")
    recorded_by_role: str | None = Field(None, description="ignored: set by the server")
    recorded_at: datetime | None = Field(None, description="ignored: set by the server")


def parse_consent(body: Any, patient_id: UUID) -> ConsentIn:
    """The JSON form or a FHIR R4 Consent (`resourceType: Consent`); 422 naming what is not
    understood, so no document is ever stored with a meaning other than its own."""
    if not isinstance(body, dict):
        raise HTTPException(422, "the body must be a JSON object: the consent form or a FHIR Consent")
    if "resourceType" in body:
        try:
            parsed = from_fhir(body, patient_id)
        except FhirConsentError as exc:
            raise HTTPException(
                422, {"message": "FHIR Consent not accepted", "problems": exc.problems}
            ) from exc
        return ConsentIn(
            provisions=parsed.provisions,
            national_opt_out=parsed.national_opt_out,
            applies_from=parsed.applies_from,
        )
    try:
        return ConsentIn.model_validate(body)
    except ValidationError as exc:
        problems = [f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise HTTPException(422, "consent not accepted: " + "; ".join(problems)) from exc


class ConsentState(BaseModel):
    patient_id: UUID
    #: the version in force now; None: no record, `default` applies
    current: ConsentVersion | None
    default: Literal["deny", "permit"]
    #: every version, newest first (including any that applies only from a future time)
    history: list[ConsentVersion]


class DecisionOut(BaseModel):
    patient_id: UUID
    purpose: Purpose
    code: str
    decision: Outcome
    eligible: bool
    consent_version: int | None
    reason: str
    decided_at: datetime


async def authorize(
    conn: psycopg.AsyncConnection[Any], user: User, patient_id: UUID, *, clinician_reads: bool
) -> None:
    """Admins, the patient themself, and (reading only) the patient's care team. Anyone else
    of those roles gets the answer a missing patient gets (404), and the attempt is audited."""
    roles = ("admin", "patient", "clinician") if clinician_reads else ("admin", "patient")
    if user.role not in roles:
        raise HTTPException(403, "only the patient, an admin or (to read) their care team may do this")
    await authorize_patient(conn, user, patient_id, roles=roles)


def _wants_fhir(request: Request, fmt: str | None) -> bool:
    return fmt == "fhir" or FHIR_JSON in request.headers.get("accept", "")


def _fhir_bundle(patient_id: UUID, state: ConsentState) -> JSONResponse:
    current = state.current.version if state.current else None
    entries = [
        {
            "fullUrl": f"urn:telehealth:consent:{patient_id}:{v.version}",
            "resource": to_fhir(patient_id, v, active=v.version == current),
        }
        for v in state.history
    ]
    bundle = {"resourceType": "Bundle", "type": "history", "total": len(entries), "entry": entries}
    Bundle.model_validate(bundle)
    return JSONResponse(bundle, media_type=FHIR_JSON)


async def _state(conn: psycopg.AsyncConnection[Any], patient_id: UUID, default: str) -> ConsentState:
    versions = await store.history(conn, patient_id)
    return ConsentState(
        patient_id=patient_id,
        current=in_force(versions, datetime.now(UTC)),
        default="permit" if default == "permit" else "deny",
        history=versions,
    )


_FHIR_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {FHIR_JSON: {"schema": {"type": "object", "description": "a FHIR R4 Bundle"}}}}
}


@router.put("/api/v1/patients/{patient_id}/consent", response_model=ConsentState, responses=_FHIR_RESPONSE)
async def record_consent(
    patient_id: UUID,
    document: Annotated[
        dict[str, Any],
        Body(
            description="the JSON form ({provisions, national_opt_out, applies_from}) or a FHIR R4"
            " Consent as exported by GET ?format=fhir",
            examples=[{"provisions": [{"purpose": "research", "decision": "permit", "codes": ["glucose"]}]}],
        ),
    ],
    request: Request,
    conn: ConnDep,
    user: CurrentUser,
    settings: SettingsDep,
    audit: Audit,
    format: Annotated[Literal["json", "fhir"] | None, Query()] = None,
) -> Any:
    """A new version; the processor applies it to everything processed after it is committed."""
    await authorize(conn, user, patient_id, clinician_reads=False)
    body = parse_consent(document, patient_id)
    if body.applies_from is not None and body.applies_from.tzinfo is None:
        raise HTTPException(422, "applies_from needs a UTC offset, e.g. 2026-11-23T08:00:00Z")
    role = "patient" if user.role == "patient" else "admin"
    try:
        await store.save_consent(
            conn, patient_id, body.provisions, body.national_opt_out, user.username, role, body.applies_from
        )
    except psycopg.errors.UniqueViolation as exc:
        raise HTTPException(409, "consent changed at the same moment; read it and retry") from exc
    await audit("consent.record", patient_id, national_opt_out=body.national_opt_out)
    state = await _state(conn, patient_id, settings.consent_default)
    return _fhir_bundle(patient_id, state) if _wants_fhir(request, format) else state


@router.get("/api/v1/patients/{patient_id}/consent", response_model=ConsentState, responses=_FHIR_RESPONSE)
async def read_consent(
    patient_id: UUID,
    request: Request,
    conn: ConnDep,
    user: CurrentUser,
    settings: SettingsDep,
    audit: Audit,
    format: Annotated[
        Literal["json", "fhir"] | None, Query(description="fhir: a FHIR R4 Bundle of Consent versions")
    ] = None,
) -> Any:
    """The version in force and the full history (also `Accept: application/fhir+json`)."""
    await authorize(conn, user, patient_id, clinician_reads=True)
    await audit("consent.read", patient_id)
    state = await _state(conn, patient_id, settings.consent_default)
    return _fhir_bundle(patient_id, state) if _wants_fhir(request, format) else state


@router.get("/api/v1/consent/decision")
async def decision(
    patient_id: UUID,
    purpose: Purpose,
    code: str,
    conn: ConnDep,
    user: CurrentUser,
    settings: SettingsDep,
    audit: Audit,
) -> DecisionOut:
    """permit / deny / no-consent for one patient, purpose and code, citing the version used."""
    if user.role not in ("admin", "patient"):
        raise HTTPException(403, "consent decisions are for admins and the patient themself")
    await authorize(conn, user, patient_id, clinician_reads=False)
    await audit("consent.decision", patient_id, purpose=purpose, code=code)
    if code not in CODES:
        raise HTTPException(422, f"unknown code {code!r}; known: {', '.join(CODES)}")
    now = datetime.now(UTC)
    versions = await store.history(conn, patient_id)
    d = decide(versions, purpose, code, now, default_permit=settings.consent_default == "permit")
    return DecisionOut(
        patient_id=patient_id,
        purpose=purpose,
        code=code,
        decision=d.outcome,
        eligible=d.eligible,
        consent_version=d.version,
        reason=d.reason,
        decided_at=now,
    )
