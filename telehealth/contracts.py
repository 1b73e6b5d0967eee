"""Wire contracts shared by gateway and processor (docs/contract.md, "Device protocol").

`parse_payload` is the one place device bytes become readings; it never raises on bad
input but returns a `Rejection` with a reason, so nothing is dropped silently.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from telehealth.bounds import check_context, check_text, check_window, escape_unstorable
from telehealth.codes import CODES
from telehealth.wire import DEVICE_ID_PATTERN as DEVICE_ID_PATTERN
from telehealth.wire import Fields
from telehealth.wire import accepted as accepted_fields
from telehealth.wire import reading as reading_fields

MAX_PAYLOAD_BYTES = 64 * 1024
MAX_BATCH = 500
#: a dead letter keeps at most this prefix of the raw bytes (every in-limit payload whole)
MAX_DEAD_RAW = MAX_PAYLOAD_BYTES

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
    REASSIGNED_DEVICE = "reassigned_device"
    DEVICE_MISMATCH = "device_mismatch"
    BAD_TOPIC = "bad_topic"
    UNSTORABLE_TEXT = "unstorable_text"
    TIME_OUT_OF_WINDOW = "time_out_of_window"
    CONTEXT_TOO_LARGE = "context_too_large"
    KAFKA_REJECTED = "kafka_rejected"
    INTERNAL_ERROR = "internal_error"


#: custom validation error types that carry their own reason
_ERROR_REASONS = {
    "unstorable_text": Reason.UNSTORABLE_TEXT,
    "time_out_of_window": Reason.TIME_OUT_OF_WINDOW,
    "context_too_large": Reason.CONTEXT_TOO_LARGE,
}


class Observation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str = Field(min_length=1, max_length=32)
    #: a JSON number: `true` is not 1.0 and "94" is not 94 (strict, as for the integers below)
    value: float = Field(strict=True)
    unit: str = Field(min_length=1, max_length=16)
    source: Literal["cgm", "smbg"] | None = None

    @field_validator("code", "unit")
    @classmethod
    def _storable(cls, value: str, info: ValidationInfo) -> str:
        return check_text(value, str(info.field_name))

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
    seq: int = Field(ge=0, le=2**63 - 1, strict=True)
    measured_at: AwareDatetime
    observations: list[Observation] = Field(min_length=1, max_length=32)
    battery_pct: int | None = Field(None, ge=0, le=100)
    context: dict[str, Any] = Field(default_factory=dict)

    @field_validator("measured_at", mode="before")
    @classmethod
    def _rfc3339_text(cls, value: Any) -> Any:
        """RFC 3339 text only: pydantic would also take a number as Unix time."""
        if not isinstance(value, str | datetime):
            raise ValueError("measured_at must be an RFC 3339 time with an offset, as text")
        return value

    @field_validator("battery_pct", mode="before")
    @classmethod
    def _a_number(cls, value: Any) -> Any:
        """A number (71, or 71.0 from a device that computes it), never `true` or "71"."""
        if isinstance(value, bool | str):
            raise ValueError("battery_pct must be a number")
        return value

    @field_validator("context")
    @classmethod
    def _bounded(cls, value: dict[str, Any]) -> dict[str, Any]:
        return check_context(value)

    @field_validator("observations")
    @classmethod
    def _one_value_per_code(cls, value: list[Observation]) -> list[Observation]:
        """An observation is known by (device, seq, code) downstream (consent decisions, the
        trend, alerts), so one reading carries each code once."""
        codes = [o.code for o in value]
        if len(set(codes)) != len(codes):
            repeated = sorted({c for c in codes if codes.count(c) > 1})
            raise ValueError(f"each code at most once per reading; repeated: {', '.join(repeated)}")
        return value

    def _arrival(self) -> datetime | None:
        """When the reading arrived, once stamped (`AcceptedReading`)."""
        return None

    @model_validator(mode="after")
    def _in_window(self, info: ValidationInfo) -> Self:
        """Judged against arrival: `received_at` once stamped, else the caller's `now`.
        (Not `getattr(self, "received_at", None)`: a missing attribute goes through pydantic's
        `__getattr__` and an exception, 4 % of the gateway's CPU in a profile.)"""
        arrival = self._arrival()
        if arrival is None:
            arrival = (info.context or {}).get("now") or datetime.now(UTC)
        check_window(self.measured_at, arrival)
        return self


class AcceptedReading(Reading):
    """A reading the gateway checked, stamped with when it arrived; the Kafka value."""

    received_at: AwareDatetime

    def _arrival(self) -> datetime | None:
        return self.received_at

    @field_validator("received_at")
    @classmethod
    def _sane_arrival(cls, value: datetime) -> datetime:
        check_window(value, datetime.now(UTC))
        return value


_ARRIVAL = TypeAdapter(AwareDatetime)


_set = object.__setattr__


def _built(model: type[Reading], fields: Fields) -> Any:
    """The model from fields `telehealth.wire` checked (handed over: they become its `__dict__`),
    in the model's field order, without validating again. What `model_construct` does, less
    its per-field Python loop (2-3 µs a model); `tests/unit/telehealth/test_wire.py` holds the
    result equal to the validated model, its JSON included."""
    fields["observations"] = [_instance(Observation, o) for o in fields["observations"]]
    return _instance(model, fields)


def _instance(model: type[BaseModel], values: dict[str, Any]) -> Any:
    instance = model.__new__(model)
    _set(instance, "__dict__", values)
    _set(instance, "__pydantic_fields_set__", set(values))
    _set(instance, "__pydantic_extra__", None)
    _set(instance, "__pydantic_private__", None)
    return instance


def parse_accepted(value: bytes) -> AcceptedReading:
    """A readings-topic value as the model: one compiled pass (`telehealth.wire`) when it is
    plainly valid, else the model's own validation, which raises `ValidationError` with why."""
    fields = accepted_fields(value)
    if fields is None:
        return AcceptedReading.model_validate_json(value)
    built: AcceptedReading = _built(AcceptedReading, fields)
    return built


def accept(reading: Reading, received_at: datetime) -> AcceptedReading:
    """The reading stamped with its arrival (already checked: nothing is validated again)."""
    return AcceptedReading.model_construct(**reading.__dict__, received_at=received_at)


def accepted_json(reading: Reading, received_at: datetime) -> bytes:
    """`accept(reading, received_at)` as JSON, the readings topic's value, without building the
    model (2.5 µs of every reading in the gateway): the reading's own JSON with `received_at`
    added last, where the model has it. A test holds the two to the same bytes."""
    body: bytes = reading.__pydantic_serializer__.to_json(reading)
    return b"".join((body[:-1], b',"received_at":', _ARRIVAL.dump_json(received_at), b"}"))


class DeadLetter(BaseModel):
    """A rejected message: the reason, a bounded prefix of its raw bytes, their size and SHA-256.

    Bounded so that a letter always fits the dead-letter topic and every text field is
    storable, whatever the message was. Build one with `capture` from the full raw bytes.
    """

    reason: Reason
    detail: str
    source_topic: str
    device_id: str | None
    received_at: AwareDatetime
    raw: bytes = Field(description="the first bytes received (at most 64 KiB), base64 on the wire")
    raw_size: int | None = Field(None, description="size of the whole message in bytes")
    raw_sha256: str | None = Field(None, description="SHA-256 (hex) of the whole message")
    letter_id: str | None = Field(
        None,
        max_length=64,
        pattern=r"^[0-9a-f]+$",
        description="random id given where the letter was made: its identity in the dead-letter"
        " table, so a replayed letter is recorded once and no two letters are taken for one",
    )

    model_config = ConfigDict(frozen=True, ser_json_bytes="base64", val_json_bytes="base64")

    @field_validator("detail", "source_topic", "device_id")
    @classmethod
    def _storable(cls, value: str | None, info: ValidationInfo) -> str | None:
        limit = 2000 if info.field_name == "detail" else 256
        return None if value is None else escape_unstorable(value, limit)

    @classmethod
    def capture(
        cls,
        reason: Reason,
        detail: str,
        *,
        source_topic: str,
        device_id: str | None,
        received_at: datetime,
        raw: bytes,
    ) -> DeadLetter:
        return cls(
            reason=reason,
            detail=detail,
            source_topic=source_topic,
            device_id=device_id,
            received_at=received_at,
            raw=raw[:MAX_DEAD_RAW],
            raw_size=len(raw),
            raw_sha256=hashlib.sha256(raw).hexdigest(),
            letter_id=uuid.uuid4().hex,
        )

    @property
    def size(self) -> int:
        """Whole message size; letters from before sizes were recorded kept their bytes whole."""
        return len(self.raw) if self.raw_size is None else self.raw_size

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.raw).hexdigest() if self.raw_sha256 is None else self.raw_sha256


class Rejection(BaseModel):
    model_config = ConfigDict(frozen=True)

    reason: Reason
    detail: str
    raw: bytes


_readings = TypeAdapter(Reading)


def describe(error: ValidationError) -> tuple[Reason, str]:
    """The reason (a bound's own, else schema_invalid) and a short, storable detail."""
    errors = error.errors(include_input=False, include_url=False)
    reason = next((_ERROR_REASONS[e["type"]] for e in errors if e["type"] in _ERROR_REASONS), None)
    parts = []
    for err in errors[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "payload"
        parts.append(f"{loc}: {err['msg']}")
    return reason or Reason.SCHEMA_INVALID, escape_unstorable("; ".join(parts), 2000)


def _raw_of(item: Any, payload: bytes) -> bytes:
    """An array element's own bytes; the whole payload if it cannot be re-encoded."""
    try:
        return json.dumps(item, separators=(",", ":")).encode()
    except (RecursionError, ValueError):
        return payload


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


def parse_payload(payload: bytes, now: datetime | None = None) -> tuple[list[Reading], list[Rejection]]:
    """Split a device payload (one reading or an array) into readings and rejections.

    Array elements are judged one by one: a bad element is rejected with its own bytes,
    its good neighbours still pass. `now` is the arrival time `measured_at` is judged
    against. Never raises on any input.

    One reading (a live device's payload) is first tried in one compiled pass
    (`telehealth.wire`, a third of the model's cost); anything that pass does not accept goes
    the careful way, which says why. A property test holds the two ways to the same answers.
    """
    now = now or datetime.now(UTC)
    if payload[:1] == b"{" and len(payload) <= MAX_PAYLOAD_BYTES:
        fields = reading_fields(payload, now)
        if fields is not None:
            reading: Reading = _built(Reading, fields)
            if _check_codes(reading) is None:
                return [reading], []
    return parse_carefully(payload, now)


def parse_carefully(payload: bytes, now: datetime) -> tuple[list[Reading], list[Rejection]]:
    """`parse_payload` without its one-step try: JSON first, then each reading, with reasons."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        detail = f"payload is {len(payload)} bytes, the limit is {MAX_PAYLOAD_BYTES}"
        return [], [Rejection(reason=Reason.OVERSIZED, detail=detail, raw=payload)]
    try:
        document = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        detail = escape_unstorable(f"not UTF-8 JSON: {exc}", 500)
        return [], [Rejection(reason=Reason.UNPARSEABLE, detail=detail, raw=payload)]
    except RecursionError:
        detail = "JSON nested too deeply"
        return [], [Rejection(reason=Reason.UNPARSEABLE, detail=detail, raw=payload)]

    if isinstance(document, list):
        if len(document) > MAX_BATCH:
            detail = f"array of {len(document)} readings, the limit is {MAX_BATCH}"
            return [], [Rejection(reason=Reason.TOO_MANY_READINGS, detail=detail, raw=payload)]
        if not document:
            return [], [Rejection(reason=Reason.SCHEMA_INVALID, detail="empty array", raw=payload)]
        items = document
        single = False
    else:
        items = [document]
        single = True

    context = {"now": now}
    readings: list[Reading] = []
    rejections: list[Rejection] = []
    for item in items:
        try:
            reading = _readings.validate_python(item, context=context)
            problem = _check_codes(reading)
        except ValidationError as exc:
            problem = describe(exc)
        if problem is not None:
            reason, detail = problem
            raw = payload if single else _raw_of(item, payload)
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
