"""The reads behind the FHIR endpoint: patients, devices and readings with when they were stored.

A reading's `stored_at` (its receipt's) is FHIR's `meta.lastUpdated`: a client that polls with
`_lastUpdated=gt<its last poll>` gets what was stored since, including late arrivals measured
long before, which `received_at` or `measured_at` would miss.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

# Readings are served only inside the window the gateway accepts (as the JSON API serves them).
_SERVED = "r.measured_at >= TIMESTAMPTZ '2000-01-01 00:00Z' AND r.measured_at < now() + INTERVAL '1 day'"
_COLUMNS = """r.patient_id, r.measured_at, r.code, r.value, r.unit, r.loinc, r.source, r.device_id,
              r.seq, r.received_at, r.quality, rr.stored_at"""
_RECEIPT = "LEFT JOIN reading_receipts rr ON rr.device_id = r.device_id AND rr.seq = r.seq"
_DEVICE_COLUMNS = "id, patient_id, kind, revoked_at, state, battery_pct, expected_interval_s"

Conn = psycopg.AsyncConnection[Any]


async def _all(conn: Conn, query: str, params: dict[str, Any] | tuple[Any, ...]) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        return await cur.fetchall()


async def patient_row(conn: Conn, patient_id: UUID) -> dict[str, Any] | None:
    rows = await _all(
        conn, "SELECT id, nhs_number, name, birth_date, sex FROM patients WHERE id = %s", (patient_id,)
    )
    return rows[0] if rows else None


async def patients_by_identifier(
    conn: Conn, *, nhs_number: str | None, patient_id: UUID | None
) -> list[dict[str, Any]]:
    """Patients whose NHS number or id is the one given (with their care team)."""
    return await _all(
        conn,
        """SELECT id, nhs_number, name, birth_date, sex, care_team FROM patients
           WHERE nhs_number = %(nhs)s OR id = %(id)s ORDER BY id""",
        {"nhs": nhs_number, "id": patient_id},
    )


async def device_row(conn: Conn, device_id: str) -> dict[str, Any] | None:
    rows = await _all(conn, f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE id = %s", (device_id,))
    return rows[0] if rows else None


async def devices_of(
    conn: Conn, patient_id: UUID, *, cgm_or: list[str] | None = None
) -> list[dict[str, Any]]:
    """The patient's devices, revoked ones too (they are history); with `cgm_or`, only the CGMs
    and the devices named."""
    where = "patient_id = %(patient)s"
    if cgm_or is not None:
        where += " AND (kind = 'cgm' OR id = ANY(%(ids)s))"
    return await _all(
        conn,
        f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE {where} ORDER BY id",
        {"patient": patient_id, "ids": cgm_or or []},
    )


@dataclass
class ReadingQuery:
    patient_id: UUID
    codes: set[str] | None = None
    loincs: set[str] | None = None
    measured_from: datetime | None = None
    measured_before: datetime | None = None
    stored_from: datetime | None = None
    stored_before: datetime | None = None
    after: tuple[datetime, str, int, str] | None = None
    limit: int = 100


async def search_readings(conn: Conn, q: ReadingQuery) -> list[dict[str, Any]]:
    """Up to `q.limit` readings in (measured_at, device_id, seq, code) order, after `q.after`."""
    where = ["r.patient_id = %(patient)s", _SERVED]
    params: dict[str, Any] = {"patient": q.patient_id, "limit": q.limit}
    if q.codes is not None or q.loincs is not None:
        where.append("(r.code = ANY(%(codes)s) OR r.loinc = ANY(%(loincs)s))")
        params |= {"codes": sorted(q.codes or ()), "loincs": sorted(q.loincs or ())}
    for column, bound, op in (
        ("r.measured_at", q.measured_from, ">="),
        ("r.measured_at", q.measured_before, "<"),
        ("coalesce(rr.stored_at, r.received_at)", q.stored_from, ">="),
        ("coalesce(rr.stored_at, r.received_at)", q.stored_before, "<"),
    ):
        if bound is not None:
            name = f"p{len(params)}"
            where.append(f"{column} {op} %({name})s")
            params[name] = bound
    if q.after is not None:
        where.append("(r.measured_at, r.device_id, r.seq, r.code) > (%(a0)s, %(a1)s, %(a2)s, %(a3)s)")
        params |= dict(zip(("a0", "a1", "a2", "a3"), q.after, strict=True))
    query = f"""SELECT {_COLUMNS} FROM readings r {_RECEIPT}
                WHERE {" AND ".join(where)}
                ORDER BY r.measured_at, r.device_id, r.seq, r.code LIMIT %(limit)s"""
    return await _all(conn, query, params)


async def cgm_readings(conn: Conn, patient_id: UUID, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """The CGM readings the glucose summary counts over [start, end) (once per device and
    measured time; finger-pricks, implausible and future-dated ones left out), oldest first."""
    rows = await _all(
        conn,
        f"""SELECT DISTINCT ON (r.device_id, r.measured_at) {_COLUMNS}
            FROM readings r LEFT JOIN devices d ON d.id = r.device_id {_RECEIPT}
            WHERE r.patient_id = %(patient)s AND r.code = 'glucose'
              AND r.measured_at >= %(start)s AND r.measured_at < %(end)s
              AND (r.source = 'cgm' OR (r.source IS NULL AND d.kind = 'cgm'))
              AND NOT (r.quality && ARRAY['implausible', 'future'])
            ORDER BY r.device_id, r.measured_at, r.seq""",
        {"patient": patient_id, "start": start, "end": end},
    )
    rows.sort(key=lambda r: (r["measured_at"], r["device_id"]))
    return rows


async def alerts_of(
    conn: Conn, patient_id: UUID, *, active: bool | None, before_id: int | None, limit: int
) -> list[dict[str, Any]]:
    """The patient's alerts, newest first, below `before_id`; `active`: open or acknowledged
    only (True), resolved only (False) or all (None)."""
    return await _all(
        conn,
        """SELECT id, patient_id, rule, severity, status, message, device_id, opened_at, resolved_at
           FROM alerts
           WHERE patient_id = %(patient)s
             AND (%(active)s::boolean IS NULL OR (status <> 'resolved') = %(active)s)
             AND (%(before)s::bigint IS NULL OR id < %(before)s)
           ORDER BY id DESC LIMIT %(limit)s""",
        {"patient": patient_id, "active": active, "before": before_id, "limit": limit},
    )
