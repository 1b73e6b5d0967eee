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

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])

_STATUSES = {
    "active": ("open", "acknowledged"),
    "open": ("open",),
    "acknowledged": ("acknowledged",),
    "resolved": ("resolved",),
    "all": ("open", "acknowledged", "resolved"),
}

_COLUMNS = """a.id, a.patient_id, p.name AS patient_name, a.rule, a.severity, a.status, a.message,
              a.code, a.value, a.device_id, a.triggered_at, a.opened_at, a.acknowledged_at,
              a.acknowledged_by, a.resolved_at, a.resolved_by, a.resolution, a.escalated_at,
              extract(epoch FROM a.acknowledged_at - a.opened_at)::float AS time_to_acknowledge_s"""


@router.get("")
async def inbox(
    conn: ConnDep,
    user: ClinicianUser,
    audit: Audit,
    status: Annotated[Literal["active", "open", "acknowledged", "resolved", "all"], Query()] = "active",
    patient_id: UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[Alert]:
    cur = await conn.execute(
        f"""SELECT {_COLUMNS} FROM alerts a JOIN patients p ON p.id = a.patient_id
            WHERE p.care_team = ANY(%s) AND a.status = ANY(%s)
              AND (%s::uuid IS NULL OR a.patient_id = %s)
            ORDER BY (a.status = 'resolved'), (a.severity = 'urgent') DESC,
                     (a.escalated_at IS NOT NULL) DESC, (a.status = 'open') DESC, a.opened_at DESC
            LIMIT %s""",
        (list(user.care_teams), list(_STATUSES[status]), patient_id, patient_id, limit),
    )
    rows = await cur.fetchall()
    shown = sorted({str(r["patient_id"]) for r in rows})
    await audit(
        "alerts.list", status=status, patient_filter=str(patient_id) if patient_id else None, patients=shown
    )
    return [Alert(**row) for row in rows]


class Note(BaseModel):
    note: Text = Field("", max_length=2000)


AlertId = Annotated[int, Path(ge=1, le=2**63 - 1)]


async def _transition(
    conn: ConnDep, user: ClinicianUser, audit: Auditor, alert_id: int, to: str, note: str
) -> Alert:
    allowed_from = ("open",) if to == "acknowledged" else ("open", "acknowledged")
    column = "acknowledged" if to == "acknowledged" else "resolved"
    async with conn.transaction():
        cur = await conn.execute(
            """SELECT a.status, a.patient_id FROM alerts a JOIN patients p ON p.id = a.patient_id
               WHERE a.id = %s AND p.care_team = ANY(%s) FOR UPDATE OF a""",
            (alert_id, list(user.care_teams)),
        )
        row = await cur.fetchone()
        if row is None:
            raise HTTPException(404, f"no alert {alert_id} in your care teams")
        patient_id = row["patient_id"]
        if row["status"] not in allowed_from:
            raise HTTPException(409, f"alert {alert_id} is {row['status']}; cannot move to {to}")
        await conn.execute(
            f"""UPDATE alerts SET status = %s, {column}_at = now(), {column}_by = %s,
                                  resolution = CASE WHEN %s = 'resolved' THEN 'manual' END,
                                  published_at = NULL WHERE id = %s""",
            (to, user.username, to, alert_id),
        )
        await conn.execute(
            "INSERT INTO alert_events (alert_id, status, actor, note) VALUES (%s, %s, %s, %s)",
            (alert_id, to, user.username, note),
        )
        await audit(
            f"alert.{'acknowledge' if to == 'acknowledged' else 'resolve'}", patient_id, alert_id=alert_id
        )
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM alerts a JOIN patients p ON p.id = a.patient_id WHERE a.id = %s",
        (alert_id,),
    )
    result = await cur.fetchone()
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
