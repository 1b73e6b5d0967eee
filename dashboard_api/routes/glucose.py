"""The consensus CGM metrics, the AGP and the daily glucose profiles of one patient.

Days and times of day are the patient's (their time zone setting, else the deployment's
`patient_time_zone`), so a report reads the same whoever opens it, wherever they are. A
period of N days is the last N calendar days there, today so far included.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated
from uuid import UUID

import psycopg
from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from dashboard_api.auditing import Audit
from dashboard_api.deps import ConnDep, CurrentUser, SettingsDep
from dashboard_api.routes.access import authorize_patient
from telehealth.storage.glucose import daily_profiles, glucose_summary, local_days
from telehealth.storage.people import patient_time_zone
from telehealth.zones import ZONE_PATTERN, check_zone

router = APIRouter(prefix="/api/v1/patients", tags=["patients"])


class AgpSlice(BaseModel):
    minute_of_day: int = Field(description="start of the slice, minutes after local midnight")
    readings: int
    p5: float
    p25: float
    p50: float
    p75: float
    p95: float


class TimeInRanges(BaseModel):
    """% of CGM readings in each consensus range (they add up to 100), decided on whole mg/dL."""

    very_low: float = Field(description="< 54 mg/dL (< 3.0 mmol/L); target < 1")
    low: float = Field(description="54-69 mg/dL (3.0-3.8 mmol/L); with very_low, target < 4")
    target: float = Field(description="70-180 mg/dL (3.9-10.0 mmol/L); target > 70")
    high: float = Field(description="181-250 mg/dL (10.1-13.9 mmol/L); with very_high, target < 25")
    very_high: float = Field(description="> 250 mg/dL (> 13.9 mmol/L); target < 5")


class GlucoseSummary(BaseModel):
    """Shares are % of CGM readings (one per device and measured time), decided on whole
    mg/dL; each 'below'/'above' share includes the more extreme one."""

    start: datetime
    end: datetime
    days: int
    timezone: str = Field(description="the IANA zone of the period's days and the AGP's times of day")
    readings: int
    interval_s: int = Field(description="the CGM's expected interval")
    expected_readings: int
    data_sufficiency_pct: float = Field(description="% of expected intervals with a reading; aim >= 70")
    sufficient: bool = Field(description="data_sufficiency_pct reaches the consensus minimum of 70 %")
    days_with_data: int = Field(description="the period's calendar days (in timezone) with a CGM reading")
    in_range_pct: float | None = Field(description="70-180 mg/dL (3.9-10.0 mmol/L) inclusive; target > 70")
    below_3_9_pct: float | None = Field(description="< 70 mg/dL (3.9 mmol/L); target < 4")
    below_3_0_pct: float | None = Field(description="< 54 mg/dL (3.0 mmol/L); target < 1")
    above_10_pct: float | None = Field(description="> 180 mg/dL (10.0 mmol/L); target < 25")
    above_13_9_pct: float | None = Field(description="> 250 mg/dL (13.9 mmol/L); target < 5")
    time_in_ranges: TimeInRanges | None
    mean_mmol_l: float | None
    mean_mg_dl: float | None
    sd_mmol_l: float | None
    cv_pct: float | None = Field(description="SD / mean; target <= 36")
    gmi_pct: float | None = Field(description="glucose management indicator, 3.31 + 0.02392 x mean mg/dL")
    agp_bin_minutes: int
    agp: list[AgpSlice]


class DayPoint(BaseModel):
    minute_of_day: float = Field(description="minutes after the patient's local midnight")
    measured_at: datetime
    value: float = Field(description="mmol/L")


class DayProfile(BaseModel):
    date: date
    readings: int
    in_range_pct: float | None = Field(description="70-180 mg/dL that day")
    points: list[DayPoint]


class DailyProfiles(BaseModel):
    timezone: str
    days: list[DayProfile] = Field(description="oldest first; today (so far) last")


Zone = Annotated[
    str | None,
    Query(max_length=64, pattern=ZONE_PATTERN, description="IANA zone; default: the patient's"),
]


async def _zone(conn: ConnDep, settings: SettingsDep, patient_id: UUID, tz: str | None) -> str:
    if tz is None:
        return await patient_time_zone(conn, patient_id) or settings.patient_time_zone
    try:
        return check_zone(tz)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from exc


@router.get("/{patient_id}/glucose-summary")
async def summary(
    patient_id: UUID,
    conn: ConnDep,
    user: CurrentUser,
    audit: Audit,
    settings: SettingsDep,
    days: Annotated[
        int, Query(ge=1, le=90, description="the last N calendar days in the patient's zone, today included")
    ] = 14,
    tz: Zone = None,
) -> GlucoseSummary:
    """Consensus CGM metrics (clinicians of the care team, or the patient)."""
    await authorize_patient(conn, user, patient_id)
    await audit("glucose_summary.read", patient_id, days=days)
    zone = await _zone(conn, settings, patient_id, tz)
    end = datetime.now(UTC)
    _, start = local_days(end, days, zone)
    bin_minutes = 30
    try:
        result = await glucose_summary(conn, patient_id, start, end, tz=zone, bin_minutes=bin_minutes)
    except psycopg.errors.InvalidParameterValue as exc:  # a zone Python knows and PostgreSQL not
        raise HTTPException(422, f"time zone {zone!r} is unknown to the database") from exc
    return GlucoseSummary(
        start=start, end=end, days=days, timezone=zone, agp_bin_minutes=bin_minutes, **result
    )


@router.get("/{patient_id}/glucose-days")
async def days_profiles(
    patient_id: UUID,
    conn: ConnDep,
    user: CurrentUser,
    audit: Audit,
    settings: SettingsDep,
    days: Annotated[int, Query(ge=1, le=31, description="the last N calendar days, today included")] = 14,
    tz: Zone = None,
) -> DailyProfiles:
    """Daily glucose profiles: each calendar day's CGM readings, midnight to midnight in the
    patient's time zone (clinicians of the care team, or the patient)."""
    await authorize_patient(conn, user, patient_id)
    await audit("glucose_days.read", patient_id, days=days)
    zone = await _zone(conn, settings, patient_id, tz)
    try:
        profiles = await daily_profiles(conn, patient_id, datetime.now(UTC), days=days, tz=zone)
    except psycopg.errors.InvalidParameterValue as exc:
        raise HTTPException(422, f"time zone {zone!r} is unknown to the database") from exc
    return DailyProfiles(timezone=zone, days=[DayProfile(**d) for d in profiles])
