"""Request and response bodies of the API."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal, Self
from uuid import UUID

from pydantic import AfterValidator, BaseModel, Field, field_validator, model_validator

from telehealth.contracts import DEVICE_ID_PATTERN
from telehealth.glucose_ranges import Trend, trend_of
from telehealth.nhs import nhs_number_valid, normalise_nhs_number
from telehealth.zones import check_zone


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("NUL characters are not allowed")
    return value


#: Free text as this API accepts it: no NUL characters (PostgreSQL text cannot hold them).
Text = Annotated[str, AfterValidator(_no_nul)]


class PatientIn(BaseModel):
    nhs_number: str = Field(examples=["943 476 5919"], max_length=20)
    name: Text = Field(min_length=1, max_length=200)
    birth_date: date
    sex: Literal["female", "male", "other", "unknown"]
    conditions: list[Annotated[Text, Field(max_length=100)]] = Field(default_factory=list, max_length=20)
    care_team: Text = Field(min_length=1, max_length=100)
    time_zone: str | None = Field(
        None, max_length=64, examples=["Europe/London"], description="IANA zone; default: the deployment's"
    )

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return None if value is None else check_zone(value)

    @field_validator("nhs_number")
    @classmethod
    def _nhs(cls, value: str) -> str:
        if not nhs_number_valid(value):
            raise ValueError("not a valid NHS number (10 digits, modulus 11 check digit)")
        return normalise_nhs_number(value)

    @field_validator("birth_date")
    @classmethod
    def _past(cls, value: date) -> date:
        if value > date.today():
            raise ValueError("birth date is in the future")
        return value


class PatientOut(BaseModel):
    id: UUID
    nhs_number: str
    name: str
    birth_date: date
    sex: str
    conditions: list[str]
    care_team: str
    time_zone: str | None = Field(None, description="the patient's own IANA zone; null: the deployment's")


class TimeZoneIn(BaseModel):
    time_zone: str | None = Field(
        max_length=64, examples=["Europe/London"], description="IANA zone; null: the deployment's default"
    )

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return None if value is None else check_zone(value)


class LatestObservation(BaseModel):
    code: str
    value: float
    unit: str
    measured_at: datetime
    quality: list[str]


class AlertSummary(BaseModel):
    id: int
    rule: str
    severity: str
    status: str
    message: str
    opened_at: datetime


class DeviceState(BaseModel):
    id: str
    kind: str
    state: str | None
    battery_pct: int | None
    last_reading_at: datetime | None


class PatientSummary(PatientOut):
    latest: list[LatestObservation]
    worst_alert: AlertSummary | None
    devices: list[DeviceState]


class ObservationPoint(BaseModel):
    measured_at: datetime
    code: str
    value: float
    unit: str
    quality: list[str] = Field(default_factory=list)
    device_id: str | None = None
    seq: int | None = None


class BucketPoint(BaseModel):
    bucket: datetime
    code: str
    count: int
    mean: float
    min: float
    max: float
    unit: str


class DeviceIn(BaseModel):
    device_id: str = Field(pattern=DEVICE_ID_PATTERN)
    patient_id: UUID
    kind: Literal["cgm", "glucometer", "oximeter", "uploader"]
    expected_interval_s: int | None = Field(None, gt=0, le=7 * 24 * 3600)


class DeviceCredentials(BaseModel):
    device_id: str
    patient_id: UUID
    mqtt_username: str
    mqtt_password: str = Field(description="shown once; only its hash is stored")
    mqtt_url: str | None = Field(description="where the device connects (TLS), when configured")
    readings_topic: str
    status_topic: str


class UploaderCredentialsOut(BaseModel):
    """A Nightscout uploader's credentials (docs/nightscout.md), shown once."""

    device_id: str
    patient_id: UUID
    api_secret: str = Field(description="shown once; apps send its SHA-1 as API-SECRET")
    api_secret_sha1: str = Field(description="the API-SECRET header value")
    access_token: str = Field(description="shown once; ?token= or Authorization: Bearer")


class DeviceReassign(BaseModel):
    patient_id: UUID


class DeviceRevoked(BaseModel):
    device_id: str
    revoked: bool


class CurrentValue(BaseModel):
    """The patient's latest credible reading of what the alert is about, beside the value that
    opened (or last raised) it."""

    value: float
    unit: str
    measured_at: datetime
    rate_per_min: float | None = Field(
        None, description="change per minute over the reading before, if that was within 15 min"
    )
    trend: Trend | None = Field(None, description="glucose: the arrow a CGM would show for that rate")

    @model_validator(mode="after")
    def _arrow(self) -> Self:
        if self.trend is None and self.rate_per_min is not None and self.unit == "mmol/L":
            self.trend = trend_of(self.rate_per_min)
        return self


class Alert(BaseModel):
    id: int
    patient_id: UUID
    patient_name: str
    rule: str
    severity: str
    status: str
    message: str
    code: str | None
    value: float | None
    device_id: str | None
    triggered_at: datetime
    opened_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    resolution: str | None = Field(None, description="auto (back in range) or manual")
    escalated_at: datetime | None = Field(None, description="urgent and unacknowledged too long")
    time_to_acknowledge_s: float | None = None
    current: CurrentValue | None = Field(None, description="the latest reading of the alert's code")


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    role: str
    expires_in: int | None = Field(None, description="seconds until the token expires")
