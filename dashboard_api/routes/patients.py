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
from telehealth.storage import observations as observations_store
from telehealth.storage.people import add_patient, patient_record, set_patient_time_zone

router = APIRouter(prefix="/api/v1/patients", tags=["patients"])

_BUCKET = re.compile(r"^(\d{1,9})\s*(s|sec|m|min|h|hour|d|day)s?$")
_UNIT_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600, "d": 86400, "day": 86400}


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
    row = await patient_record(conn, patient_id)
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
    rows = await observations_store.patient_summaries(conn, list(CODES), list(user.care_teams))
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
    if size is None:
        return rows_response(
            await observations_store.raw_points(conn, patient_id, start, end, code), ObservationPoint
        )
    rows = await observations_store.buckets(conn, patient_id, start, end, code, size)
    return rows_response(rows, BucketPoint)
