"""Consent to secondary use: versioned records (plain JSON or FHIR R4 Consent) and decisions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import psycopg
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from fhir.resources.R4B.bundle import Bundle
from pydantic import BaseModel, Field

from dashboard_api.deps import ConnDep, CurrentUser, SettingsDep
from telehealth.codes import CODES
from telehealth.consent import ConsentVersion, Outcome, Provision, Purpose, decide, in_force
from telehealth.consent_fhir import to_fhir
from telehealth.storage import consent as store
from telehealth.storage.people import User

router = APIRouter(tags=["consent"])
FHIR_JSON = "application/fhir+json"


class ConsentIn(BaseModel):
    provisions: list[Provision] = Field(default_factory=list)
    national_opt_out: bool = False
    applies_from: datetime | None = Field(None, description="when it takes effect; default: now")


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
    """Admins, the patient themself, and (reading only) the patient's care team."""
    cur = await conn.execute("SELECT care_team FROM patients WHERE id = %s", (patient_id,))
    row = await cur.fetchone()
    if row is None:
        raise HTTPException(404, f"no patient {patient_id}")
    if user.role == "admin" or (user.role == "patient" and user.patient_id == patient_id):
        return
    if clinician_reads and user.role == "clinician" and row["care_team"] in user.care_teams:
        return
    raise HTTPException(403, "only the patient, an admin or (to read) their care team may do this")


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


@router.put("/api/v1/patients/{patient_id}/consent", response_model=ConsentState)
async def record_consent(
    patient_id: UUID,
    body: ConsentIn,
    request: Request,
    conn: ConnDep,
    user: CurrentUser,
    settings: SettingsDep,
    format: Annotated[Literal["json", "fhir"] | None, Query()] = None,
) -> Any:
    """A new version; the processor applies it to everything processed after it is committed."""
    await authorize(conn, user, patient_id, clinician_reads=False)
    if body.applies_from is not None and body.applies_from.tzinfo is None:
        raise HTTPException(422, "applies_from needs a UTC offset, e.g. 2026-11-23T08:00:00Z")
    role = "patient" if user.role == "patient" else "admin"
    try:
        await store.save_consent(
            conn, patient_id, body.provisions, body.national_opt_out, user.username, role, body.applies_from
        )
    except psycopg.errors.UniqueViolation as exc:
        raise HTTPException(409, "consent changed at the same moment; read it and retry") from exc
    state = await _state(conn, patient_id, settings.consent_default)
    return _fhir_bundle(patient_id, state) if _wants_fhir(request, format) else state


@router.get("/api/v1/patients/{patient_id}/consent", response_model=ConsentState)
async def read_consent(
    patient_id: UUID,
    request: Request,
    conn: ConnDep,
    user: CurrentUser,
    settings: SettingsDep,
    format: Annotated[
        Literal["json", "fhir"] | None, Query(description="fhir: a FHIR R4 Bundle of Consent versions")
    ] = None,
) -> Any:
    """The version in force and the full history (also `Accept: application/fhir+json`)."""
    await authorize(conn, user, patient_id, clinician_reads=True)
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
) -> DecisionOut:
    """permit / deny / no-consent for one patient, purpose and code, citing the version used."""
    if user.role not in ("admin", "patient"):
        raise HTTPException(403, "consent decisions are for admins and the patient themself")
    await authorize(conn, user, patient_id, clinician_reads=False)
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
