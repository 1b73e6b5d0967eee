"""The compiled pass (`telehealth.wire`) may only accept what the pydantic models accept, as the
same reading; what it does not accept goes to the models, which say why. Held here for the
readings-topic value the processor decodes (`parse_accepted`); the device payload's two ways
are held in `test_contracts_parse_paths.py`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from telehealth import wire
from telehealth.contracts import AcceptedReading, Reading, parse_accepted
from tests.factories import contract_example
from tests.unit.telehealth.test_contracts_parse_paths import odd_values

NOW = datetime(2026, 11, 23, 8, 16, tzinfo=UTC)
ACCEPTED: dict[str, Any] = contract_example(received_at="2026-11-23T08:15:03.250000Z")


def model_of(value: bytes) -> AcceptedReading | None:
    try:
        return AcceptedReading.model_validate_json(value)
    except ValidationError:
        return None


def agrees(value: bytes) -> None:
    model = model_of(value)
    if wire.accepted(value) is not None:
        assert model is not None, f"the compiled pass accepted what the model rejects: {value!r}"
        fast = parse_accepted(value)
        assert fast.model_dump() == model.model_dump()
        assert fast.model_dump_json() == model.model_dump_json()
    elif model is None:
        with pytest.raises(ValidationError):
            parse_accepted(value)
    else:
        assert parse_accepted(value) == model


def test_the_plain_value_takes_the_compiled_pass() -> None:
    """Otherwise every test here would pass without testing the pass at all."""
    value = json.dumps(ACCEPTED).encode()
    assert wire.accepted(value) is not None
    assert wire.reading(json.dumps(contract_example()).encode(), NOW) is not None
    agrees(value)


@given(field=st.sampled_from([*ACCEPTED, "extra"]), value=odd_values)
def test_a_field_with_any_value(field: str, value: object) -> None:
    agrees(json.dumps(ACCEPTED | {field: value}).encode())


@given(
    field=st.sampled_from(["code", "value", "unit", "source", "extra"]),
    value=odd_values,
    which=st.integers(0, 1),
)
def test_an_observation_field_with_any_value(field: str, value: object, which: int) -> None:
    document = json.loads(json.dumps(ACCEPTED))
    document["observations"][which][field] = value
    agrees(json.dumps(document).encode())


@given(field=st.sampled_from([*ACCEPTED]))
def test_a_field_missing(field: str) -> None:
    agrees(json.dumps({k: v for k, v in ACCEPTED.items() if k != field}).encode())


@given(at=st.integers(0, 260), byte=st.binary(min_size=1, max_size=3), replace=st.booleans())
def test_bytes_changed_anywhere(at: int, byte: bytes, replace: bool) -> None:
    value = json.dumps(ACCEPTED, separators=(",", ":")).encode()
    at = min(at, len(value))
    agrees(value[:at] + byte + value[at + (len(byte) if replace else 0) :])


offsets = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
times = st.datetimes(datetime(1999, 12, 30), datetime(2026, 11, 24), timezones=offsets)


@given(
    at=times,
    spec=st.sampled_from(["auto", "seconds", "milliseconds", "microseconds"]),
    sep=st.sampled_from("T t"),
)
def test_times_however_written(at: datetime, spec: str, sep: str) -> None:
    text = at.isoformat(sep=sep, timespec=spec)
    agrees(json.dumps(ACCEPTED | {"measured_at": text}).encode())
    agrees(json.dumps(ACCEPTED | {"measured_at": text.replace("+00:00", "Z")}).encode())


@pytest.mark.parametrize(
    "measured_at",
    [
        "2026-11-23T08:15:02.1234567Z",  # more than microseconds
        "2026-11-23T08:15:02.9999995Z",
        "2026-11-23T08:15:60Z",  # a leap second
        "2026-11-23T08:15Z",
        "2026-11-23T08:15:02+0100",
        "2026-11-23T08:15:02z",
        "2026-11-23",
        "20261123T081502Z",
        "2026-11-23T08:15:02+24:00",
        "1999-12-31T23:59:59Z",  # before the window
        "2026-11-25T08:15:02Z",  # more than a day after arrival
    ],
)
def test_awkward_times(measured_at: str) -> None:
    agrees(json.dumps(ACCEPTED | {"measured_at": measured_at}).encode())


@pytest.mark.parametrize(
    "change",
    [
        {"battery_pct": 71.0},  # the model takes a whole float; the pass leaves it to the model
        {"battery_pct": None},
        {"seq": 2**63 - 1},
        {"seq": 2**63},
        {"context": {}},
        {"context": {"note": "a\u0000b"}},
        {"context": {"n": 1e308 * 10}},
        {"observations": [{"code": "spo2", "value": 1e400, "unit": "%"}]},
        {
            "observations": [
                {"code": "spo2", "value": 94, "unit": "%"},
                {"code": "spo2", "value": 95, "unit": "%"},
            ]
        },
        {"observations": [{"code": "sp\u0000o2", "value": 94, "unit": "%"}]},
        {"observations": [{"code": "glucose", "value": 5.5, "unit": "mmol/L", "source": "cgm"}]},
        {"device_id": "x" * 65},
        {"received_at": "2030-01-01T00:00:00Z"},  # arrival in the future
    ],
)
def test_awkward_values(change: dict[str, Any]) -> None:
    agrees(json.dumps(ACCEPTED | change).encode())


def test_a_device_reading_takes_the_pass_only_as_the_model_would() -> None:
    value = json.dumps(contract_example()).encode()
    fields = wire.reading(value, NOW)
    assert fields is not None
    model = Reading.model_validate_json(value, context={"now": NOW})
    assert [o.model_dump() for o in model.observations] == fields["observations"]
    assert {k: v for k, v in fields.items() if k != "observations"} == model.model_dump(
        exclude={"observations"}
    )
