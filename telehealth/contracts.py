"""Wire contracts shared by gateway and processor (SPEC section 4).

`parse_payload` is the one place device bytes become readings; it never raises on bad
input but returns a `Rejection` with a reason, so nothing is dropped silently.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from telehealth.codes import CODES

MAX_PAYLOAD_BYTES = 64 * 1024
MAX_BATCH = 500
DEVICE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"

DeviceId = Annotated[str, Field(pattern=DEVICE_ID_PATTERN)]


class Reason(StrEnum):
    """Why a message went to the dead-letter topic."""

    UNPARSEABLE = "unparseable"
    OVERSIZED = "oversized"
    SCHEMA_INVALID = "schema_invalid"
    TOO_MANY_READINGS = "too_many_readings"
    UNKNOWN_CODE = "unknown_code"
    UNKNOWN_UNIT = "unknown_unit"
    UNKNOWN_DEVICE = "unknown_device"
    REVOKED_DEVICE = "revoked_device"
    DEVICE_MISMATCH = "device_mismatch"
    BAD_TOPIC = "bad_topic"


class Observation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str = Field(min_length=1, max_length=32)
    value: float
    unit: str = Field(min_length=1, max_length=16)
    source: Literal["cgm", "smbg"] | None = None

    @field_validator("value")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("value must be a finite number")
        return value


class Reading(BaseModel):
    """One device reading as published over MQTT."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device_id: DeviceId
    seq: int = Field(ge=0, le=2**63 - 1)
    measured_at: AwareDatetime
    observations: list[Observation] = Field(min_length=1, max_length=32)
    battery_pct: int | None = Field(None, ge=0, le=100)
    context: dict[str, Any] = Field(default_factory=dict)


class AcceptedReading(Reading):
    """A reading the gateway checked, stamped with when it arrived; the Kafka value."""

    received_at: AwareDatetime


class DeadLetter(BaseModel):
    """A rejected message with its raw bytes (base64 in JSON) and the reason."""

    reason: Reason
    detail: str
    source_topic: str
    device_id: str | None
    received_at: AwareDatetime
    raw: bytes = Field(description="the exact bytes received, base64 on the wire")

    model_config = ConfigDict(frozen=True, ser_json_bytes="base64", val_json_bytes="base64")


class Rejection(BaseModel):
    model_config = ConfigDict(frozen=True)

    reason: Reason
    detail: str
    raw: bytes


_readings = TypeAdapter(Reading)


def _describe(error: ValidationError) -> str:
    parts = []
    for err in error.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "payload"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def _check_codes(reading: Reading) -> tuple[Reason, str] | None:
    for i, obs in enumerate(reading.observations):
        spec = CODES.get(obs.code)
        if spec is None:
            return Reason.UNKNOWN_CODE, f"observations.{i}.code: unknown code {obs.code!r}"
        if obs.unit not in spec.units:
            accepted = ", ".join(sorted(spec.units))
            return (
                Reason.UNKNOWN_UNIT,
                f"observations.{i}.unit: {obs.unit!r} is not a unit of {obs.code} ({accepted})",
            )
        if obs.source is not None and obs.source not in spec.sources:
            return Reason.SCHEMA_INVALID, f"observations.{i}.source: not valid for {obs.code}"
    return None


def wire_time(at: datetime) -> str:
    """An aware time as devices write it: ISO 8601 with a `Z` for UTC."""
    return at.isoformat().replace("+00:00", "Z")


def parse_payload(payload: bytes) -> tuple[list[Reading], list[Rejection]]:
    """Split a device payload (one reading or an array) into readings and rejections.

    Array elements are judged one by one: a bad element is rejected with its own bytes,
    its good neighbours still pass.
    """
    if len(payload) > MAX_PAYLOAD_BYTES:
        detail = f"payload is {len(payload)} bytes, the limit is {MAX_PAYLOAD_BYTES}"
        return [], [Rejection(reason=Reason.OVERSIZED, detail=detail, raw=payload)]
    try:
        document = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        return [], [Rejection(reason=Reason.UNPARSEABLE, detail=f"not UTF-8 JSON: {exc}", raw=payload)]

    if isinstance(document, list):
        if len(document) > MAX_BATCH:
            detail = f"array of {len(document)} readings, the limit is {MAX_BATCH}"
            return [], [Rejection(reason=Reason.TOO_MANY_READINGS, detail=detail, raw=payload)]
        if not document:
            return [], [Rejection(reason=Reason.SCHEMA_INVALID, detail="empty array", raw=payload)]
        items: list[tuple[Any, bytes]] = [
            (item, json.dumps(item, separators=(",", ":")).encode()) for item in document
        ]
    else:
        items = [(document, payload)]

    readings: list[Reading] = []
    rejections: list[Rejection] = []
    for item, raw in items:
        try:
            reading = _readings.validate_python(item)
        except ValidationError as exc:
            rejections.append(Rejection(reason=Reason.SCHEMA_INVALID, detail=_describe(exc), raw=raw))
            continue
        problem = _check_codes(reading)
        if problem is not None:
            reason, detail = problem
            rejections.append(Rejection(reason=reason, detail=detail, raw=raw))
            continue
        readings.append(reading)
    return readings, rejections


class DeviceStatus(BaseModel):
    """Retained status message, also the device's last will."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    state: Literal["online", "offline"]
    battery_pct: int | None = Field(None, ge=0, le=100)


class StatusEvent(DeviceStatus):
    """A checked status message on the Kafka status topic."""

    device_id: DeviceId
    received_at: AwareDatetime
