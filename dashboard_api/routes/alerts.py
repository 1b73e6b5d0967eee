"""The clinician's alert inbox, worst first, with acknowledge and resolve."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel, Field

from dashboard_api.auditing import Audit, Auditor
from dashboard_api.deps import ClinicianUser, ConnDep
from dashboard_api.problems import documented
from dashboard_api.schemas import Alert, Text
from telehealth.storage import alerts

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])

_STATUSES = {
    "active": ("open", "acknowledged"),
    "open": ("open",),
    "acknowledged": ("acknowledged",),
    "resolved": ("resolved",),
    "all": ("open", "acknowledged", "resolved"),
}


@router.get("")
async def inbox(
    conn: ConnDep,
    user: ClinicianUser,
    audit: Audit,
    status: Annotated[Literal["active", "open", "acknowledged", "resolved", "all"], Query()] = "active",
    patient_id: UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[Alert]:
    rows = await alerts.inbox(conn, list(user.care_teams), _STATUSES[status], patient_id, limit)
    shown = sorted({str(r["patient_id"]) for r in rows})
    await audit(
        "alerts.list", status=status, patient_filter=str(patient_id) if patient_id else None, patients=shown
    )
    return [Alert(**row) for row in rows]


class Note(BaseModel):
    note: Text = Field("", max_length=2000)


AlertId = Annotated[int, Path(ge=1, le=2**63 - 1)]


async def _transition(
    conn: ConnDep,
    user: ClinicianUser,
    audit: Auditor,
    alert_id: int,
    to: Literal["acknowledged", "resolved"],
    note: str,
) -> Alert:
    async with conn.transaction():
        try:
            patient_id = await alerts.transition(
                conn, alert_id, list(user.care_teams), to, user.username, note
            )
        except alerts.AlertNotFound as exc:
            raise HTTPException(404, str(exc)) from exc
        except alerts.AlertStateConflict as exc:
            raise HTTPException(409, str(exc)) from exc
        await audit(
            f"alert.{'acknowledge' if to == 'acknowledged' else 'resolve'}", patient_id, alert_id=alert_id
        )
    result = await alerts.one(conn, alert_id)
    if result is None:
        raise HTTPException(404, f"no alert {alert_id}")
    return Alert(**result)


@router.post("/{alert_id}/acknowledge", responses={409: documented("the alert is not open")})
async def acknowledge(
    alert_id: AlertId, body: Note, conn: ConnDep, user: ClinicianUser, audit: Audit
) -> Alert:
    return await _transition(conn, user, audit, alert_id, "acknowledged", body.note)


@router.post("/{alert_id}/resolve", responses={409: documented("the alert is already resolved")})
async def resolve(alert_id: AlertId, body: Note, conn: ConnDep, user: ClinicianUser, audit: Audit) -> Alert:
    if not body.note.strip():
        raise HTTPException(422, "resolving an alert by hand needs a note")
    return await _transition(conn, user, audit, alert_id, "resolved", body.note)
