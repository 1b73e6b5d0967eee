"""Reading the alert event stream: events after a commit-ordered position, and snapshots.

`alert_events.stream_pos` is assigned at commit (migration 0008), so "every event after
position N" never skips one that commits late. Each event comes with its alert's current
state and the patient's care team, which is what a dashboard needs and what decides who
may receive it.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row, tuple_row

from telehealth.storage.alerts import COLUMNS as ALERT_COLUMNS
from telehealth.storage.alerts import CURRENT, WORST_FIRST

#: The channel the trigger of migration 0008 notifies on every commit that added events.
CHANNEL = "alert_events"

_AFTER = f"""
SELECT e.stream_pos AS pos, p.care_team,
       json_build_object('id', e.id, 'status', e.status, 'severity', e.severity,
                         'actor', e.actor, 'note', e.note, 'at', e.at) AS event,
       row_to_json(x) AS alert
FROM alert_events e
JOIN alerts a ON a.id = e.alert_id
JOIN patients p ON p.id = a.patient_id
CROSS JOIN LATERAL (SELECT {ALERT_COLUMNS}) x
WHERE e.stream_pos > %(after)s
  AND (%(teams)s::text[] IS NULL OR p.care_team = ANY(%(teams)s::text[]))
ORDER BY e.stream_pos
LIMIT %(limit)s
"""


async def listen(conn: psycopg.AsyncConnection[Any]) -> None:
    """Ask for a notification on CHANNEL whenever a commit adds events (autocommit connection)."""
    await conn.execute(f"LISTEN {CHANNEL}")


async def events_after(
    conn: psycopg.AsyncConnection[Any], after: int, teams: list[str] | None, limit: int = 500
) -> list[dict[str, Any]]:
    """Events with a position above `after`, oldest first; `teams=None` means every team."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_AFTER, {"after": after, "teams": teams, "limit": limit})
        return await cur.fetchall()


async def head(conn: psycopg.AsyncConnection[Any]) -> int:
    """The highest position committed so far (0 when there are no events)."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute("SELECT coalesce(max(stream_pos), 0) FROM alert_events")
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def snapshot(conn: psycopg.AsyncConnection[Any], teams: list[str]) -> tuple[int, list[dict[str, Any]]]:
    """The active alerts of these teams and the position they are consistent with.

    Read in one REPEATABLE READ transaction, so the alerts reflect exactly the events up to
    the returned position; a client continues from there with `events_after`.
    """
    async with conn.transaction():
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        position = await head(conn)
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                f"""SELECT {ALERT_COLUMNS} FROM alerts a JOIN patients p ON p.id = a.patient_id
                    WHERE p.care_team = ANY(%s) AND a.status <> 'resolved'
                    ORDER BY {WORST_FIRST}
                    LIMIT 1000""",
                (teams,),
            )
            alerts = await cur.fetchall()
    return position, alerts


async def current_values(conn: psycopg.AsyncConnection[Any], teams: list[str]) -> dict[int, dict[str, Any]]:
    """Each active alert's current value (`alerts.CURRENT`), with its patient, by alert id."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(
            f"""SELECT a.id, a.patient_id, {CURRENT} FROM alerts a JOIN patients p ON p.id = a.patient_id
                WHERE p.care_team = ANY(%s) AND a.status <> 'resolved' LIMIT 1000""",
            (teams,),
        )
        return {row[0]: {"patient_id": row[1], "current": row[2]} for row in await cur.fetchall()}
