"""A reading's JSON in one compiled pass (msgspec): the hot path of the gateway and processor.

The pydantic models of `telehealth.contracts` are the contract and say why something is
wrong; validating through them costs 9 µs a reading, most of it in their Python validators.
Here msgspec checks the plain shape a live device sends (types, lengths, ranges, the device
id's pattern, no unknown fields) in C, the few checks left run once in Python, and the result
is built as those same models without validating again (`telehealth.contracts`). Whatever this pass does not
accept (a time without an offset, a battery of 71.0, a bad value) returns None, and the
caller asks the models, which accept it or give the reason. So this pass may only ever accept
what the models accept, as the same reading: property tests hold it to that
(`tests/unit/telehealth/test_wire.py`, `tests/unit/telehealth/test_contracts_parse_paths.py`).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct, field
from pydantic_core import PydanticCustomError

from telehealth.bounds import check_context, check_window, storable

DEVICE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
#: a reading's fields in the model's order, each observation's too: `contracts` builds the
#: models from them
Fields = dict[str, Any]


#: RFC 3339 with at most microseconds (msgspec's own datetime rounds more digits, the models
#: truncate them), read by `datetime.fromisoformat`
Time = Annotated[str, Meta(pattern=r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)$")]


class _Observation(Struct, forbid_unknown_fields=True):
    code: Annotated[str, Meta(min_length=1, max_length=32)]
    value: float
    unit: Annotated[str, Meta(min_length=1, max_length=16)]
    source: Literal["cgm", "smbg"] | None = None


class _Reading(Struct, forbid_unknown_fields=True, kw_only=True):
    device_id: Annotated[str, Meta(pattern=DEVICE_ID_PATTERN)]
    seq: Annotated[int, Meta(ge=0, le=2**63 - 1)]
    measured_at: Time
    observations: Annotated[list[_Observation], Meta(min_length=1, max_length=32)]
    battery_pct: Annotated[int, Meta(ge=0, le=100)] | None = None
    context: dict[str, Any] = field(default_factory=dict)


class _Accepted(_Reading, forbid_unknown_fields=True, kw_only=True):
    received_at: Time


_READING = msgspec.json.Decoder(_Reading)
_ACCEPTED = msgspec.json.Decoder(_Accepted)


def reading(payload: bytes, now: datetime) -> Fields | None:
    """One device reading's fields, judged against arrival at `now`; None: ask the model."""
    try:
        raw = _READING.decode(payload)
        measured_at = datetime.fromisoformat(raw.measured_at)
    except (msgspec.ValidationError, msgspec.DecodeError, ValueError):
        return None
    return _fields(raw, measured_at) if _plain(raw, measured_at, now) else None


def accepted(value: bytes) -> Fields | None:
    """A readings-topic value's fields (a reading the gateway stamped, with `received_at`);
    None: ask the model."""
    try:
        raw = _ACCEPTED.decode(value)
        measured_at = datetime.fromisoformat(raw.measured_at)
        arrival = datetime.fromisoformat(raw.received_at)
        check_window(arrival, datetime.now(UTC))
    except (msgspec.ValidationError, msgspec.DecodeError, ValueError, PydanticCustomError):
        return None
    return _fields(raw, measured_at, arrival) if _plain(raw, measured_at, arrival) else None


def _plain(raw: _Reading, measured_at: datetime, arrival: datetime) -> bool:
    """The models' checks that msgspec does not make: the time window, finite values, storable
    text, each code once, the context's bounds."""
    codes = set()
    for o in raw.observations:
        if not (math.isfinite(o.value) and storable(o.code) and storable(o.unit)) or o.code in codes:
            return False
        codes.add(o.code)
    try:
        check_window(measured_at, arrival)
        if raw.context:
            check_context(raw.context)
    except PydanticCustomError:
        return False
    return True


def _fields(raw: _Reading, measured_at: datetime, received_at: datetime | None = None) -> Fields:
    fields = {
        "device_id": raw.device_id,
        "seq": raw.seq,
        "measured_at": measured_at,
        "observations": [
            {"code": o.code, "value": o.value, "unit": o.unit, "source": o.source} for o in raw.observations
        ],
        "battery_pct": raw.battery_pct,
        "context": raw.context,
    }
    if received_at is not None:
        fields["received_at"] = received_at
    return fields
