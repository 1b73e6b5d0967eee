"""Alert state: the one module that writes the `alerts` and `alert_events` tables.

The processor opens, upgrades, re-notifies and auto-resolves alerts and escalates overdue
ones; clinicians acknowledge and resolve them through the API. Both go through here, so
every transition is conditional on the alert's current state and leaves an event row with
who and when, and the inbox order ("worst first") is written once.

Two words, two meanings: an alert is *upgraded* when a warning becomes urgent (or moves to a
later stage at its severity); an urgent alert nobody acknowledged in time is *escalated*.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal
from uuid import UUID

import psycopg
from psycopg.rows import dict_row, tuple_row

from telehealth.errors import TelehealthError

Change = Literal["open", "upgrade", "renotify", "resolve"]

#: The inbox order: unresolved first; then measured urgent, predicted urgent (a forecast, code
#: `*_forecast`), warnings; within each, escalated, not yet acknowledged, latest change first.
#: A measured emergency is never listed below a predicted one.
WORST_FIRST = """(a.status = 'resolved'),
                 CASE WHEN a.severity <> 'urgent' THEN 2
                      WHEN coalesce(a.code, '') LIKE '%%forecast' THEN 1 ELSE 0 END,
                 (a.escalated_at IS NOT NULL) DESC, (a.status = 'open') DESC, a.triggered_at DESC"""

#: The patient's latest credible reading of the alert's code (a forecast's: the measured code),
#: and its rate of change per minute over the reading before it, if that was within 15 min.
CURRENT = """(SELECT json_build_object(
                  'value', r.value, 'unit', r.unit, 'measured_at', r.measured_at,
                  'rate_per_min', CASE WHEN b.measured_at >= r.measured_at - interval '15 minutes'
                      THEN (r.value - b.value) / (extract(epoch FROM r.measured_at - b.measured_at) / 60) END)
              FROM (SELECT value, unit, measured_at FROM readings
                    WHERE patient_id = a.patient_id AND code = split_part(a.code, '_', 1)
                      AND NOT quality && '{future,artefact}'
                    ORDER BY measured_at DESC LIMIT 1) r
              LEFT JOIN LATERAL (
                    SELECT value, measured_at FROM readings
                    WHERE patient_id = a.patient_id AND code = split_part(a.code, '_', 1)
                      AND NOT quality && '{future,artefact}' AND measured_at < r.measured_at
                    ORDER BY measured_at DESC LIMIT 1) b ON true)"""

COLUMNS = f"""a.id, a.patient_id, p.name AS patient_name, a.rule, a.severity, a.status, a.message,
             a.code, a.value, a.device_id, a.triggered_at, a.opened_at, a.acknowledged_at,
             a.acknowledged_by, a.resolved_at, a.resolved_by, a.resolution, a.escalated_at,
             extract(epoch FROM a.acknowledged_at - a.opened_at)::float AS time_to_acknowledge_s,
             {CURRENT} AS current"""

_CHANGE_SQL: dict[Change, str] = {
    "open": """
INSERT INTO alerts (patient_id, rule, severity, message, code, value, device_id, seq, triggered_at)
VALUES (%(patient_id)s, %(rule)s, %(severity)s, %(message)s, %(code)s, %(value)s,
        %(device_id)s, %(seq)s, %(measured_at)s)
ON CONFLICT (patient_id, rule) WHERE status <> 'resolved' DO NOTHING
RETURNING id""",
    # Never steps down: a warning may become urgent, or move to a later stage at its severity
    # (predicted low -> low, stored as the code that raised it).
    "upgrade": """
UPDATE alerts SET severity = %(severity)s, message = %(message)s, code = %(code)s, value = %(value)s,
                  device_id = %(device_id)s, seq = %(seq)s, triggered_at = %(measured_at)s,
                  published_at = NULL
WHERE patient_id = %(patient_id)s AND rule = %(rule)s AND status <> 'resolved'
  AND (severity = 'warning' OR %(severity)s = 'urgent')
  AND (severity <> %(severity)s OR code IS DISTINCT FROM %(code)s)
RETURNING id""",
    # A new dip or severe low, or an urgent low still there long after it was acknowledged:
    # back in the inbox as open, and pushed again.
    "renotify": """
UPDATE alerts SET status = 'open', severity = %(severity)s, message = %(message)s, code = %(code)s,
                  value = %(value)s, device_id = %(device_id)s, seq = %(seq)s,
                  triggered_at = %(measured_at)s, acknowledged_at = NULL, acknowledged_by = NULL,
                  published_at = NULL
WHERE patient_id = %(patient_id)s AND rule = %(rule)s AND status <> 'resolved'
RETURNING id""",
    "resolve": """
UPDATE alerts SET status = 'resolved', resolved_at = now(), resolved_by = %(actor)s,
                  resolution = 'auto', published_at = NULL
WHERE patient_id = %(patient_id)s AND rule = %(rule)s AND status <> 'resolved'
RETURNING id""",
}
_EVENT_STATUS: dict[Change, str] = {
    "open": "open",
    "upgrade": "open",
    "renotify": "open",
    "resolve": "resolved",
}


class AlertNotFound(TelehealthError):
    """No such alert in the caller's care teams."""


class AlertStateConflict(TelehealthError):
    """The alert is not in a state that allows the transition."""


async def record_event(
    conn: psycopg.AsyncConnection[Any],
    alert_id: int,
    status: str,
    actor: str,
    note: str,
    severity: str | None = None,
) -> None:
    await conn.execute(
        "INSERT INTO alert_events (alert_id, status, severity, actor, note) VALUES (%s, %s, %s, %s, %s)",
        (alert_id, status, severity, actor, note),
    )


async def change(
    conn: psycopg.AsyncConnection[Any], kind: Change, fields: dict[str, Any], actor: str, note: str
) -> int | None:
    """One automatic transition (a rule's decision), if the alert's state allows it; the id."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(_CHANGE_SQL[kind], {**fields, "actor": actor})
        row = await cur.fetchone()
    if row is None:
        return None
    await record_event(conn, row[0], _EVENT_STATUS[kind], actor, note, fields.get("severity"))
    alert_id: int = row[0]
    return alert_id


#: `unresolved`'s query, for callers that send it in a pipeline with others
UNRESOLVED = """SELECT patient_id, rule, severity, code, status, device_id, triggered_at, acknowledged_at
               FROM alerts
               WHERE status <> 'resolved' AND patient_id = ANY(%s)"""


async def unresolved(conn: psycopg.AsyncConnection[Any], patient_ids: list[UUID]) -> list[dict[str, Any]]:
    """The alerts not yet resolved for these patients: rule, severity, code, status, device."""
    if not patient_ids:
        return []
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(UNRESOLVED, (patient_ids,))
        return await cur.fetchall()


async def unresolved_and_thresholds(
    conn: psycopg.AsyncConnection[Any], patient_ids: list[UUID]
) -> tuple[list[dict[str, Any]], list[tuple[UUID, Any]]]:
    """The unresolved alerts of these patients and the newest own thresholds of those who have
    them, both queries sent together (pipeline mode) inside the caller's transaction."""
    async with conn.pipeline():
        open_cur = conn.cursor(row_factory=dict_row)
        await open_cur.execute(UNRESOLVED, (patient_ids,))
        rules_cur = conn.cursor(row_factory=tuple_row)
        await rules_cur.execute(
            """SELECT DISTINCT ON (patient_id) patient_id, settings FROM patient_thresholds
               WHERE patient_id = ANY(%s) ORDER BY patient_id, version DESC""",
            (patient_ids,),
        )
    return await open_cur.fetchall(), [(r[0], r[1]) for r in await rules_cur.fetchall()]


async def escalate_overdue(conn: psycopg.AsyncConnection[Any], after: timedelta, actor: str) -> list[int]:
    """Urgent alerts nobody acknowledged within `after` are escalated, once."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(
            """UPDATE alerts SET escalated_at = now(), published_at = NULL
               WHERE status = 'open' AND severity = 'urgent' AND escalated_at IS NULL
                 AND opened_at < now() - %s::interval
               RETURNING id""",
            (after,),
        )
        ids = [r[0] for r in await cur.fetchall()]
    for alert_id in ids:
        await record_event(conn, alert_id, "escalated", actor, f"not acknowledged within {after}", "urgent")
    return ids


async def unpublished(conn: psycopg.AsyncConnection[Any], limit: int = 1000) -> list[dict[str, Any]]:
    """The outbox: alerts changed since they were last sent to the alerts topic."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            """SELECT id, patient_id, rule, severity, status, message, code, value, device_id,
                      seq, triggered_at, opened_at, acknowledged_at, resolved_at, escalated_at
               FROM alerts WHERE published_at IS NULL ORDER BY id LIMIT %s""",
            (limit,),
        )
        return await cur.fetchall()


async def mark_published(conn: psycopg.AsyncConnection[Any], ids: list[int]) -> None:
    await conn.execute("UPDATE alerts SET published_at = now() WHERE id = ANY(%s)", (ids,))


async def inbox(
    conn: psycopg.AsyncConnection[Any],
    care_teams: list[str],
    statuses: tuple[str, ...],
    patient_id: UUID | None,
    limit: int,
) -> list[dict[str, Any]]:
    """The care teams' alerts, worst first."""
    cur = await conn.execute(
        f"""SELECT {COLUMNS} FROM alerts a JOIN patients p ON p.id = a.patient_id
            WHERE p.care_team = ANY(%s) AND a.status = ANY(%s)
              AND (%s::uuid IS NULL OR a.patient_id = %s)
            ORDER BY {WORST_FIRST}
            LIMIT %s""",
        (care_teams, list(statuses), patient_id, patient_id, limit),
    )
    return await cur.fetchall()


async def one(conn: psycopg.AsyncConnection[Any], alert_id: int) -> dict[str, Any] | None:
    cur = await conn.execute(
        f"SELECT {COLUMNS} FROM alerts a JOIN patients p ON p.id = a.patient_id WHERE a.id = %s", (alert_id,)
    )
    return await cur.fetchone()


async def transition(
    conn: psycopg.AsyncConnection[Any],
    alert_id: int,
    care_teams: list[str],
    to: Literal["acknowledged", "resolved"],
    actor: str,
    note: str,
) -> UUID:
    """A clinician acknowledges or resolves an alert of their care teams; returns its patient.
    Call inside a transaction: the row is locked until the event is written."""
    allowed_from = ("open",) if to == "acknowledged" else ("open", "acknowledged")
    column = "acknowledged" if to == "acknowledged" else "resolved"
    cur = await conn.execute(
        """SELECT a.status, a.patient_id FROM alerts a JOIN patients p ON p.id = a.patient_id
           WHERE a.id = %s AND p.care_team = ANY(%s) FOR UPDATE OF a""",
        (alert_id, care_teams),
    )
    row: Any = await cur.fetchone()
    if row is None:
        raise AlertNotFound(f"no alert {alert_id} in your care teams")
    status, patient_id = (row["status"], row["patient_id"]) if isinstance(row, dict) else row
    if status not in allowed_from:
        raise AlertStateConflict(f"alert {alert_id} is {status}; cannot move to {to}")
    await conn.execute(
        f"""UPDATE alerts SET status = %s, {column}_at = now(), {column}_by = %s,
                              resolution = CASE WHEN %s = 'resolved' THEN 'manual' END,
                              published_at = NULL WHERE id = %s""",
        (to, actor, to, alert_id),
    )
    await record_event(conn, alert_id, to, actor, note)
    return UUID(str(patient_id))
