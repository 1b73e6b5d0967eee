"""Per-patient alert thresholds: versioned, validated, with who changed them."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import psycopg
from fastapi import APIRouter, HTTPException
from pydantic import BaseModel

from dashboard_api.auditing import Audit
from dashboard_api.deps import ClinicianUser, ConnDep, CurrentUser
from dashboard_api.problems import documented
from dashboard_api.routes.access import authorize_patient
from telehealth.storage.thresholds import save_thresholds, threshold_history
from telehealth.thresholds import Thresholds

router = APIRouter(prefix="/api/v1/patients", tags=["thresholds"])


class ThresholdsVersion(BaseModel):
    version: int
    thresholds: Thresholds
    changed_by: str | None
    changed_at: datetime | None


class ThresholdsHistory(BaseModel):
    current: ThresholdsVersion
    history: list[ThresholdsVersion]


@router.put("/{patient_id}/thresholds", responses={409: documented("changed concurrently; read and retry")})
async def set_thresholds(
    patient_id: UUID, body: Thresholds, conn: ConnDep, user: ClinicianUser, audit: Audit
) -> ThresholdsVersion:
    """A new version, in force for every reading processed after it is saved."""
    await authorize_patient(conn, user, patient_id)
    try:
        async with conn.transaction():
            row = await save_thresholds(conn, patient_id, body, user.username)
            await audit("thresholds.update", patient_id, version=row["version"])
    except psycopg.errors.UniqueViolation as exc:
        raise HTTPException(409, "thresholds changed at the same moment; read them and retry") from exc
    return ThresholdsVersion(thresholds=body, **row)


@router.get("/{patient_id}/thresholds")
async def get_thresholds(
    patient_id: UUID, conn: ConnDep, user: CurrentUser, audit: Audit
) -> ThresholdsHistory:
    await authorize_patient(conn, user, patient_id)
    await audit("thresholds.read", patient_id)
    history = [
        ThresholdsVersion(
            version=r["version"],
            thresholds=Thresholds.model_validate(r["settings"]),
            changed_by=r["changed_by"],
            changed_at=r["changed_at"],
        )
        for r in await threshold_history(conn, patient_id)
    ]
    defaults = ThresholdsVersion(version=0, thresholds=Thresholds(), changed_by=None, changed_at=None)
    return ThresholdsHistory(current=history[0] if history else defaults, history=history)
