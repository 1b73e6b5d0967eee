"""The HL7 CGM IG's operations on a patient: the CGM summary and the submission bundle.

Scoped and audited as the rest of /fhir (dashboard_api.routes.fhir); the values are the
dashboard's glucose summary for the same days (docs/fhir.md).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID
from zoneinfo import ZoneInfo

import psycopg
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response

from dashboard_api.auditing import Audit
from dashboard_api.deps import ConnDep, SettingsDep
from dashboard_api.routes.fhir import RESPONSES, FhirJSON, fhir_response
from dashboard_api.routes.fhir_scope import PathPatientScope, Scope
from telehealth.fhir import cgm, resources
from telehealth.fhir.base import check_bundle_envelope, instant
from telehealth.storage import fhir_reads
from telehealth.storage.glucose import glucose_summary, local_days
from telehealth.storage.people import patient_time_zone

router = APIRouter(prefix="/fhir", tags=["fhir"], default_response_class=FhirJSON, responses=RESPONSES)

#: the longest period a CGM summary or bundle covers (as the dashboard's summary)
MAX_DAYS = 90


async def _period(
    conn: ConnDep,
    settings: SettingsDep,
    patient_id: UUID,
    days: int | None,
    start: date | None,
    end: date | None,
) -> tuple[cgm.Period, datetime, datetime, str]:
    """The period asked for as the patient's calendar days, and its [from, to) moments.

    `days=N` is the dashboard's period (the last N days, today included); `start` and `end`
    name the days themselves (an `end` of today or later stops at now)."""
    zone = await patient_time_zone(conn, patient_id) or settings.patient_time_zone
    now = datetime.now(UTC)
    today = now.astimezone(ZoneInfo(zone)).date()
    if start is None and end is None:
        n = days or 14
        dates, moment_from = local_days(now, n, zone)
        return cgm.Period(patient_id, dates[0], dates[-1], now), moment_from, now, zone
    if days is not None or start is None:
        raise HTTPException(400, "give either days, or start (and optionally end) dates")
    last = min(end or today, today)
    if last < start:
        raise HTTPException(400, "end is before start (or start is in the future)")
    if (last - start).days + 1 > MAX_DAYS:
        raise HTTPException(400, f"a period covers at most {MAX_DAYS} days")
    tz = ZoneInfo(zone)
    moment_from = datetime.combine(start, time(0), tzinfo=tz)
    moment_to = now if last == today else datetime.combine(last + timedelta(days=1), time(0), tzinfo=tz)
    return cgm.Period(patient_id, start, last, now), moment_from, moment_to, zone


Days = Annotated[
    int | None, Query(ge=1, le=MAX_DAYS, description="the last N calendar days, today included (default 14)")
]
Day = Annotated[date | None, Query(description="first (start) or last (end) calendar day, YYYY-MM-DD")]


async def _summary(
    conn: ConnDep, period: cgm.Period, moment_from: datetime, moment_to: datetime, zone: str
) -> dict[str, Any]:
    try:
        return await glucose_summary(conn, period.patient_id, moment_from, moment_to, tz=zone)
    except psycopg.errors.InvalidParameterValue as exc:
        raise HTTPException(422, f"time zone {zone!r} is unknown to the database") from exc


_PERIOD = {"days", "start", "end", "_format"}


@router.get("/Patient/{patient_id}/$cgm-summary")
async def cgm_summary(
    patient_id: UUID,
    request: Request,
    conn: ConnDep,
    _: Annotated[Scope, Depends(PathPatientScope(_PERIOD))],
    audit: Audit,
    settings: SettingsDep,
    days: Days = None,
    start: Day = None,
    end: Day = None,
) -> Response:
    """The CGM summary Observation and its members (HL7 CGM IG), as a `collection` Bundle;
    the values are the dashboard's glucose summary for the same days."""
    period, moment_from, moment_to, zone = await _period(conn, settings, patient_id, days, start, end)
    await audit("fhir.cgm_summary.read", patient_id, first=str(period.first), last=str(period.last))
    summary = await _summary(conn, period, moment_from, moment_to, zone)
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": instant(period.computed_at),
        "entry": [{"fullUrl": url, "resource": r} for url, r in cgm.summary_members(summary, period)],
    }
    check_bundle_envelope(bundle)
    return fhir_response(bundle)


@router.get("/Patient/{patient_id}/$cgm-bundle")
async def cgm_bundle(
    patient_id: UUID,
    request: Request,
    conn: ConnDep,
    _: Annotated[Scope, Depends(PathPatientScope(_PERIOD | {"readings", "unit"}))],
    audit: Audit,
    settings: SettingsDep,
    days: Days = None,
    start: Day = None,
    end: Day = None,
    readings: Annotated[bool, Query(description="include the CGM sensor readings")] = True,
    unit: Annotated[
        Literal["mmol/L", "mg/dL"], Query(description="the readings' unit (the IG's molar or mass profile)")
    ] = "mmol/L",
) -> Response:
    """A `transaction` Bundle shaped as the IG's `$submit-cgm-bundle` input: the patient, their
    CGM devices, the summary with its members and (unless readings=false) the sensor readings."""
    period, moment_from, moment_to, zone = await _period(conn, settings, patient_id, days, start, end)
    await audit(
        "fhir.cgm_bundle.read", patient_id, first=str(period.first), last=str(period.last), readings=readings
    )
    row = await fhir_reads.patient_row(conn, patient_id)
    if row is None:
        raise HTTPException(404, f"no patient {patient_id} in your care")
    summary = await _summary(conn, period, moment_from, moment_to, zone)
    sensor = await fhir_reads.cgm_readings(conn, patient_id, moment_from, moment_to) if readings else []
    devices = await fhir_reads.devices_of(conn, patient_id, cgm_or=sorted({r["device_id"] for r in sensor}))
    bundle = cgm.submission_bundle(
        resources.patient(row),
        [resources.device(d) for d in devices],
        summary,
        period,
        sensor,
        mass_units=unit == "mg/dL",
    )
    return fhir_response(bundle)
