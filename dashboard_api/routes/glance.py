"""`GET /api/v1/patients/{id}/now`: the patient at a glance, for the patient view's header."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal
from uuid import UUID

from fastapi import APIRouter
from pydantic import BaseModel, Field

from dashboard_api.auditing import Audit
from dashboard_api.deps import ConnDep, CurrentUser, SettingsDep
from dashboard_api.routes.access import authorize_patient
from telehealth.glucose_ranges import Trend
from telehealth.storage.patient_now import patient_now
from telehealth.storage.people import patient_time_zone

router = APIRouter(prefix="/api/v1/patients", tags=["patients"])


class Reading(BaseModel):
    measured_at: datetime
    value: float
    unit: str
    quality: list[str]
    source: str | None
    device_id: str
    seq: int


class Current(Reading):
    credible: Reading | None = Field(
        description="when the newest value is flagged (artefact, implausible, future):"
        " the newest one that is not"
    )


class GlucoseTrend(BaseModel):
    delta: float | None = Field(
        description="mmol/L since the device's previous reading (at most 15 min before)"
    )
    delta_minutes: float | None
    rate_per_min: float | None = Field(description="mmol/L per minute")
    rate_source: Literal["filter", "slope"] | None = Field(
        description="filter: the processor's filtered rate; slope: least squares over the last 15 min"
    )
    trend: Trend | None = Field(description="the arrow: steady within 1 mg/dL/min, quickly beyond 3")


class ForecastPoint(BaseModel):
    at: datetime
    minutes: int
    value: float = Field(description="mmol/L")


class Forecast(BaseModel):
    from_: datetime = Field(alias="from", description="the CGM reading the forecast starts from")
    level: float
    rate_per_min: float
    horizon_min: int = Field(description="the patient's predicted-low horizon")
    predicted_low_line: float = Field(description="mmol/L: a forecast below it is a predicted low")
    points: list[ForecastPoint]


class PatientNow(BaseModel):
    time_zone: str = Field(description="the patient's IANA time zone (their own, or the deployment's)")
    glucose: Current | None
    glucose_trend: GlucoseTrend | None
    spo2: Current | None
    pulse: Current | None
    forecast: Forecast | None = Field(description="none without a recent CGM reading with a stored trend")


@router.get("/{patient_id}/now", response_model_by_alias=True)
async def now(
    patient_id: UUID, conn: ConnDep, user: CurrentUser, audit: Audit, settings: SettingsDep
) -> PatientNow:
    """Newest glucose (change, trend arrow, forecast), SpO2 and pulse (clinicians of the care
    team, or the patient)."""
    await authorize_patient(conn, user, patient_id)
    await audit("patient.now.read", patient_id)
    state = await patient_now(conn, patient_id, datetime.now(UTC))
    zone = await patient_time_zone(conn, patient_id) or settings.patient_time_zone
    return PatientNow.model_validate({"time_zone": zone, **state})
