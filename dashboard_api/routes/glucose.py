"""`GET /api/v1/patients/{id}/glucose-summary`: the consensus CGM metrics and the AGP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from dashboard_api.auditing import Audit
from dashboard_api.deps import ConnDep, CurrentUser
from dashboard_api.routes.access import authorize_patient
from telehealth.storage.glucose import glucose_summary

router = APIRouter(prefix="/api/v1/patients", tags=["patients"])


class AgpSlice(BaseModel):
    minute_of_day: int = Field(description="start of the slice, minutes after local midnight")
    readings: int
    p5: float
    p25: float
    p50: float
    p75: float
    p95: float


class GlucoseSummary(BaseModel):
    """Shares are % of CGM readings; each 'below'/'above' share includes the more extreme one."""

    start: datetime
    end: datetime
    timezone: str
    readings: int
    interval_s: int = Field(description="the CGM's expected interval")
    expected_readings: int
    data_sufficiency_pct: float = Field(description="% of expected intervals with a reading; aim >= 70")
    in_range_pct: float | None = Field(description="3.9-10.0 mmol/L inclusive; target > 70")
    below_3_9_pct: float | None = Field(description="< 3.9 mmol/L; target < 4")
    below_3_0_pct: float | None = Field(description="< 3.0 mmol/L; target < 1")
    above_10_pct: float | None = Field(description="> 10.0 mmol/L; target < 25")
    above_13_9_pct: float | None = Field(description="> 13.9 mmol/L; target < 5")
    mean_mmol_l: float | None
    sd_mmol_l: float | None
    cv_pct: float | None = Field(description="SD / mean; target <= 36")
    gmi_pct: float | None = Field(description="glucose management indicator, 3.31 + 0.02392 x mean mg/dL")
    agp_bin_minutes: int
    agp: list[AgpSlice]


@router.get("/{patient_id}/glucose-summary")
async def summary(
    patient_id: UUID,
    conn: ConnDep,
    user: CurrentUser,
    audit: Audit,
    days: Annotated[int, Query(ge=1, le=90, description="the last N days up to now")] = 14,
    tz: Annotated[
        str, Query(max_length=64, pattern=r"^[A-Za-z0-9_+\-/]+$", description="IANA zone for the AGP")
    ] = "UTC",
) -> GlucoseSummary:
    """Consensus CGM metrics (clinicians of the care team, or the patient)."""
    await authorize_patient(conn, user, patient_id)
    await audit("glucose_summary.read", patient_id, days=days)
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise HTTPException(422, f"unknown time zone {tz!r}; use an IANA name such as Europe/London") from exc
    end = datetime.now(UTC)
    start = end - timedelta(days=days)
    bin_minutes = 30
    try:
        result = await glucose_summary(conn, patient_id, start, end, tz=tz, bin_minutes=bin_minutes)
    except psycopg.errors.InvalidParameterValue as exc:  # a zone Python knows and PostgreSQL not
        raise HTTPException(422, f"time zone {tz!r} is unknown to the database") from exc
    return GlucoseSummary(start=start, end=end, timezone=tz, agp_bin_minutes=bin_minutes, **result)
