"""Patients: registration (admin), the clinician's list, and observation series."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from uuid import UUID

import psycopg
from fastapi import APIRouter, HTTPException, Query, Response, status

from dashboard_api.auditing import Audit
from dashboard_api.deps import AdminUser, ClinicianUser, ConnDep, CurrentUser
from dashboard_api.problems import documented
from dashboard_api.routes.access import authorize_patient
from dashboard_api.rows import rows_response
from dashboard_api.schemas import (
    AlertSummary,
    BucketPoint,
    DeviceState,
    LatestObservation,
    ObservationPoint,
    PatientIn,
    PatientOut,
    PatientSummary,
    TimeZoneIn,
)
from telehealth.codes import CODES
from telehealth.storage.alerts import WORST_FIRST
from telehealth.storage.people import add_patient, set_patient_time_zone

router = APIRouter(prefix="/api/v1/patients", tags=["patients"])

_BUCKET = re.compile(r"^(\d{1,9})\s*(s|sec|m|min|h|hour|d|day)s?$")
_UNIT_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600, "d": 86400, "day": 86400}
MAX_RAW_POINTS = 20_000
# Readings are served only inside the window the gateway accepts (from 2000, at most a day
# ahead): values stored before that bound was enforced (year 0 or 10000) would neither
# serialise nor be meaningful, and a far-future one would stay "latest" for ever.
SERVED = "measured_at >= TIMESTAMPTZ '2000-01-01 00:00Z' AND measured_at < now() + INTERVAL '1 day'"


def parse_bucket(text: str) -> timedelta:
    match = _BUCKET.match(text.strip().lower())
    if not match:
        raise HTTPException(422, f"bucket {text!r} is not like 5m, 1h or 1d")
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds > 31 * 86400:
        raise HTTPException(422, "bucket must be between 1 minute and 31 days")
    size = timedelta(seconds=seconds)
    if not timedelta(minutes=1) <= size <= timedelta(days=31):
        raise HTTPException(422, "bucket must be between 1 minute and 31 days")
    return size


@router.post(
    "", status_code=status.HTTP_201_CREATED, responses={409: documented("NHS number already registered")}
)
async def register(body: PatientIn, conn: ConnDep, _: AdminUser, audit: Audit) -> PatientOut:
    try:
        async with conn.transaction():
            row = await add_patient(conn, **body.model_dump())
            await audit("patient.register", row["id"], care_team=row["care_team"])
    except psycopg.errors.UniqueViolation as exc:
        raise HTTPException(409, "a patient with this NHS number is already registered") from exc
    except psycopg.errors.InvalidParameterValue as exc:
        raise HTTPException(422, f"time zone {body.time_zone!r} is unknown to the database") from exc
    return PatientOut(**row)


@router.get("/{patient_id}")
async def one_patient(patient_id: UUID, conn: ConnDep, user: CurrentUser, audit: Audit) -> PatientOut:
    """One patient's record (clinicians of the care team, or the patient)."""
    await authorize_patient(conn, user, patient_id)
    await audit("patient.read", patient_id)
    cur = await conn.execute("SELECT * FROM patients WHERE id = %s", (patient_id,))
    row = await cur.fetchone()
    if row is None:
        raise HTTPException(404, f"no patient {patient_id} in your care")
    return PatientOut(**{k: row[k] for k in PatientOut.model_fields})


@router.put("/{patient_id}/time-zone")
async def set_time_zone(
    patient_id: UUID, body: TimeZoneIn, conn: ConnDep, user: CurrentUser, audit: Audit
) -> TimeZoneIn:
    """The patient's time zone: the days and times of day of their AGP and daily profiles
    (clinicians of the care team, admins, or the patient)."""
    await authorize_patient(conn, user, patient_id, roles=("clinician", "patient", "admin"))
    try:
        async with conn.transaction():
            await set_patient_time_zone(conn, patient_id, body.time_zone)
            await audit("patient.time_zone.update", patient_id, time_zone=body.time_zone)
    except psycopg.errors.InvalidParameterValue as exc:
        raise HTTPException(422, f"time zone {body.time_zone!r} is unknown to the database") from exc
    return body


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


def _summary(row: dict[str, Any]) -> PatientSummary:
    return PatientSummary(
        **{k: row[k] for k in PatientOut.model_fields},
        latest=[LatestObservation(**x) for x in row["latest"]],
        worst_alert=AlertSummary(**row["worst_alert"]) if row["worst_alert"] else None,
        devices=[DeviceState(**d) for d in row["devices"]],
    )


@router.get("")
async def list_patients(conn: ConnDep, user: ClinicianUser, audit: Audit) -> list[PatientSummary]:
    """The clinician's own care teams' patients with latest values, worst open alert, devices."""
    cur = await conn.execute(_SUMMARY, {"codes": list(CODES), "teams": list(user.care_teams)})
    rows = await cur.fetchall()
    await audit("patients.list", patients=[str(r["id"]) for r in rows])
    return [_summary(row) for row in rows]


@router.get("/{patient_id}/observations", response_model=list[ObservationPoint] | list[BucketPoint])
async def observations(
    patient_id: UUID,
    conn: ConnDep,
    user: CurrentUser,
    audit: Audit,
    code: Annotated[
        str | None, Query(max_length=20, description="glucose, spo2, pulse; all when empty")
    ] = None,
    from_: Annotated[datetime | None, Query(alias="from")] = None,
    to: datetime | None = None,
    bucket: Annotated[
        str | None, Query(max_length=20, description="e.g. 5m, 1h, 1d; raw points when empty")
    ] = None,
) -> Response:
    """Raw points (all, with quality flags) or buckets (implausible values left out)."""
    await authorize_patient(conn, user, patient_id)
    if code is not None and code not in CODES:
        raise HTTPException(422, f"unknown code {code!r}; known: {', '.join(CODES)}")
    end = to or datetime.now(UTC)
    try:
        start = from_ or end - timedelta(hours=24)
    except OverflowError as exc:
        raise HTTPException(422, "to is too early to look back 24 hours from") from exc
    if start.tzinfo is None or end.tzinfo is None:
        raise HTTPException(422, "from and to need a UTC offset, e.g. 2026-11-23T08:00:00Z")
    if start >= end:
        raise HTTPException(422, "from must be before to")
    size = parse_bucket(bucket) if bucket is not None else None
    await audit(
        "observations.read",
        patient_id,
        code=code,
        start=start.isoformat(),
        end=end.isoformat(),
        bucket=bucket,
    )
    params: dict[str, Any] = {"patient": patient_id, "start": start, "end": end, "code": code}
    where = (
        "patient_id = %(patient)s AND measured_at >= %(start)s AND measured_at < %(end)s"
        f" AND (%(code)s::text IS NULL OR code = %(code)s) AND {SERVED}"
    )
    if bucket is None:
        # Binary results: a day of CGM points loads in about two thirds of the text format's time.
        async with conn.cursor(binary=True) as cur:
            await cur.execute(
                f"""SELECT measured_at, code, value, unit, quality, device_id, seq FROM readings
                    WHERE {where} ORDER BY measured_at, code LIMIT {MAX_RAW_POINTS}""",
                params,
            )
            return rows_response(await cur.fetchall(), ObservationPoint)
    params["bucket"] = size
    cur = await conn.execute(
        f"""SELECT date_bin(%(bucket)s, measured_at, TIMESTAMPTZ 'epoch') AS bucket, code,
                   count(*) AS count, avg(value) AS mean, min(value) AS min, max(value) AS max,
                   min(unit) AS unit
            FROM readings WHERE {where} AND NOT ('implausible' = ANY(quality))
            GROUP BY 1, 2 ORDER BY 1, 2""",
        params,
    )
    return rows_response(await cur.fetchall(), BucketPoint)
