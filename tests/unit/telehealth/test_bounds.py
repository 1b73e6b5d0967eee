"""The contract boundary: what PostgreSQL or Python cannot hold never gets past parse_payload."""

import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telehealth.bounds import MAX_CONTEXT_DEPTH, MAX_CONTEXT_NODES, escape_unstorable, storable
from telehealth.contracts import MAX_DEAD_RAW, AcceptedReading, DeadLetter, Reason, parse_payload

NOW = datetime(2026, 11, 23, 8, 16, tzinfo=UTC)


def reading(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "device_id": "oxi-1",
        "seq": 1,
        "measured_at": "2026-11-23T08:15:02Z",
        "observations": [{"code": "spo2", "value": 94, "unit": "%"}],
        "context": {"supplemental_o2": False},
    }
    return base | overrides


def reasons(document: object) -> list[Reason]:
    readings, rejections = parse_payload(json.dumps(document).encode(), NOW)
    assert not (readings and rejections)
    return [r.reason for r in rejections]


@pytest.mark.parametrize(
    "context",
    [
        {"note": "a\u0000b"},
        {"a\u0000": 1},
        {"nested": {"deeper": ["ok", "\ud800"]}},
        {"k": [{"\udfff": True}]},
    ],
)
def test_unstorable_text_anywhere_in_context_is_rejected(context: dict[str, object]) -> None:
    assert reasons(reading(context=context)) == [Reason.UNSTORABLE_TEXT]


@pytest.mark.parametrize("field", ["code", "unit"])
def test_unstorable_code_or_unit_is_rejected(field: str) -> None:
    obs = {"code": "spo2", "value": 94, "unit": "%"} | {field: "x\u0000"}
    assert reasons(reading(observations=[obs])) == [Reason.UNSTORABLE_TEXT]


def test_unstorable_extra_key_is_schema_invalid_with_a_storable_detail() -> None:
    _, [rejection] = parse_payload(json.dumps(reading(**{"\u0000evil": 1})).encode(), NOW)
    assert rejection.reason is Reason.SCHEMA_INVALID
    assert storable(rejection.detail) and "\\u0000evil" in rejection.detail


@pytest.mark.parametrize(
    ("measured_at", "verdict"),
    [
        ("9999-12-31T23:59:59-01:00", [Reason.TIME_OUT_OF_WINDOW]),
        ("0001-01-01T00:00:00+14:00", [Reason.TIME_OUT_OF_WINDOW]),
        ("1999-12-31T23:59:59Z", [Reason.TIME_OUT_OF_WINDOW]),
        ("2000-01-01T00:00:00Z", []),
        ((NOW + timedelta(hours=23)).isoformat(), []),  # stored, flagged future downstream
        ((NOW + timedelta(days=1, seconds=1)).isoformat(), [Reason.TIME_OUT_OF_WINDOW]),
    ],
)
def test_measured_at_window(measured_at: str, verdict: list[Reason]) -> None:
    assert reasons(reading(measured_at=measured_at)) == verdict


def test_processor_side_judges_the_window_against_received_at() -> None:
    late = reading(measured_at="1970-01-01T00:00:00Z") | {"received_at": NOW.isoformat()}
    with pytest.raises(ValueError, match="before 2000"):
        AcceptedReading.model_validate_json(json.dumps(late))
    nul = reading(context={"x": "\u0000"}) | {"received_at": NOW.isoformat()}
    with pytest.raises(ValueError, match="cannot be stored"):
        AcceptedReading.model_validate_json(json.dumps(nul))


def test_context_depth_and_size_are_bounded() -> None:
    deep: object = "leaf"
    for _ in range(MAX_CONTEXT_DEPTH):
        deep = [deep]
    assert reasons(reading(context={"d": deep})) == [Reason.CONTEXT_TOO_LARGE]
    assert reasons(reading(context={"d": deep[0]})) == []  # type: ignore[index]
    wide = {f"k{i}": i for i in range(MAX_CONTEXT_NODES)}
    assert reasons(reading(context=wide)) == [Reason.CONTEXT_TOO_LARGE]
    assert reasons(reading(context={"s": "x" * 513})) == [Reason.CONTEXT_TOO_LARGE]


@pytest.mark.parametrize("depth", [100, 990, 10_000, 100_000])
def test_deep_nesting_never_raises(depth: int) -> None:
    for payload in (b"[" * depth, b"[" * depth + b"]" * depth, b'{"a":' * depth + b"1" + b"}" * depth):
        if len(payload) > 64 * 1024:
            payload = payload[: 64 * 1024]
        readings, rejections = parse_payload(payload, NOW)
        assert readings == [] and len(rejections) == 1
    inside = json.dumps([reading(), {"context": 0}]).encode()[:-1] + b"," + b"[" * depth + b"]" * depth + b"]"
    readings, rejections = parse_payload(inside[: 64 * 1024], NOW)
    if depth <= 100:  # parses: each element judged on its own
        assert len(readings) == 1 and [r.reason for r in rejections] == [Reason.SCHEMA_INVALID] * 2
    else:  # beyond what the JSON parser recurses into: the whole message is one rejection
        assert readings == [] and [r.reason for r in rejections] == [Reason.UNPARSEABLE]


def test_non_finite_context_numbers_are_rejected() -> None:
    payload = json.dumps(reading(context={"x": float("nan")})).encode()
    _, [rejection] = parse_payload(payload, NOW)
    assert rejection.reason is Reason.SCHEMA_INVALID


def test_dead_letter_keeps_a_bounded_prefix_with_size_and_hash() -> None:
    raw = b"\x00" * (3 * MAX_DEAD_RAW)
    letter = DeadLetter.capture(
        Reason.OVERSIZED,
        "detail \x00 with \ud800",
        source_topic="t/\x00",
        device_id="d\x00",
        received_at=NOW,
        raw=raw,
    )
    assert letter.raw == raw[:MAX_DEAD_RAW]
    assert (letter.size, letter.sha256) == (len(raw), hashlib.sha256(raw).hexdigest())
    assert all(storable(t) for t in (letter.detail, letter.source_topic, letter.device_id or ""))
    wire = letter.model_dump_json().encode()
    assert len(wire) < 100_000
    assert DeadLetter.model_validate_json(wire) == letter


def test_escape_unstorable_bounds_length() -> None:
    assert escape_unstorable("a\x00b", 100) == "a\\u0000b"
    assert len(escape_unstorable("x" * 5000, 100)) == 100


@given(st.text(max_size=30), st.text(max_size=30))
def test_any_text_in_context_is_stored_or_rejected_as_unstorable(key: str, value: str) -> None:
    got = reasons(reading(context={key: value}))
    if storable(key) and storable(value):
        assert got == []
    else:
        assert got == [Reason.UNSTORABLE_TEXT]
