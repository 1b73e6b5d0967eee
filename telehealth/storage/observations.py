"""Readings as the dashboard lists them: the care team's patients at a glance, and one patient's
series as raw points or time buckets."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg

from telehealth.storage.alerts import WORST_FIRST

MAX_RAW_POINTS = 20_000
# Readings are served only inside the window the gateway accepts (from 2000, at most a day
# ahead): values stored before that bound was enforced (year 0 or 10000) would neither
# serialise nor be meaningful, and a far-future one would stay "latest" for ever.
SERVED = "measured_at >= TIMESTAMPTZ '2000-01-01 00:00Z' AND measured_at < now() + INTERVAL '1 day'"

_SUMMARY = f"""
SELECT p.*,
  (SELECT coalesce(json_agg(l), '[]') FROM (
      SELECT r.code, r.value, r.unit, r.measured_at, r.quality
      FROM unnest(%(codes)s::text[]) AS c(code)
      CROSS JOIN LATERAL (
          SELECT code, value, unit, measured_at, quality FROM readings
          WHERE patient_id = p.id AND code = c.code AND {SERVED}
          ORDER BY measured_at DESC LIMIT 1) r) l
  ) AS latest,
  (SELECT row_to_json(a) FROM (
      SELECT a.id, a.rule, a.severity, a.status, a.message, a.opened_at FROM alerts a
      WHERE a.patient_id = p.id AND a.status <> 'resolved'
      ORDER BY {WORST_FIRST} LIMIT 1) a
  ) AS worst_alert,
  (SELECT coalesce(json_agg(d ORDER BY d.id), '[]') FROM (
      SELECT dv.id, dv.kind, dv.state, dv.battery_pct,
             (SELECT measured_at FROM reading_receipts rr WHERE rr.device_id = dv.id AND {SERVED}
              ORDER BY seq DESC LIMIT 1) AS last_reading_at
      FROM devices dv WHERE dv.patient_id = p.id AND dv.revoked_at IS NULL) d
  ) AS devices
FROM patients p
WHERE p.care_team = ANY(%(teams)s)
ORDER BY p.name
"""

_WHERE = (
    "patient_id = %(patient)s AND measured_at >= %(start)s AND measured_at < %(end)s"
    f" AND (%(code)s::text IS NULL OR code = %(code)s) AND {SERVED}"
)
_RAW = f"""SELECT measured_at, code, value, unit, quality, device_id, seq FROM readings
    WHERE {_WHERE} ORDER BY measured_at, code LIMIT {MAX_RAW_POINTS}"""
_BUCKETS = f"""SELECT date_bin(%(bucket)s, measured_at, TIMESTAMPTZ 'epoch') AS bucket, code,
       count(*) AS count, avg(value) AS mean, min(value) AS min, max(value) AS max,
       min(unit) AS unit
    FROM readings WHERE {_WHERE} AND NOT ('implausible' = ANY(quality))
    GROUP BY 1, 2 ORDER BY 1, 2"""


async def patient_summaries(
    conn: psycopg.AsyncConnection[Any], codes: list[str], teams: list[str]
) -> list[Any]:
    """Each patient of these care teams with the latest value per code, the worst open alert
    and the active devices (JSON columns `latest`, `worst_alert`, `devices`)."""
    cur = await conn.execute(_SUMMARY, {"codes": codes, "teams": teams})
    return await cur.fetchall()


def _params(patient_id: UUID, start: datetime, end: datetime, code: str | None) -> dict[str, Any]:
    return {"patient": patient_id, "start": start, "end": end, "code": code}


async def raw_points(
    conn: psycopg.AsyncConnection[Any], patient_id: UUID, start: datetime, end: datetime, code: str | None
) -> list[Any]:
    """Every reading in [start, end) with its quality flags, at most MAX_RAW_POINTS."""
    # Binary results: a day of CGM points loads in about two thirds of the text format's time.
    async with conn.cursor(binary=True) as cur:
        await cur.execute(_RAW, _params(patient_id, start, end, code))
        return await cur.fetchall()


async def buckets(
    conn: psycopg.AsyncConnection[Any],
    patient_id: UUID,
    start: datetime,
    end: datetime,
    code: str | None,
    size: timedelta,
) -> list[Any]:
    """Count, mean, min and max per bucket and code; implausible values left out."""
    params = _params(patient_id, start, end, code) | {"bucket": size}
    cur = await conn.execute(_BUCKETS, params)
    return await cur.fetchall()
