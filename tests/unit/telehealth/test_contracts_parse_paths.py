"""`parse_payload` tries one reading in one step (pydantic's JSON parser) before the careful
way (`json.loads`, then the model, with reasons). The one step may only ever accept what the
careful way accepts, as the same reading; everything else must get the careful answer."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telehealth.contracts import parse_carefully, parse_payload
from tests.factories import contract_example

NOW = datetime(2026, 11, 23, 8, 16, tzinfo=UTC)
VALID: dict[str, Any] = contract_example()  # the contract's example


def same_answer(payload: bytes) -> None:
    fast, careful = parse_payload(payload, NOW), parse_carefully(payload, NOW)
    assert fast[0] == careful[0]
    assert [(r.reason, r.detail, r.raw) for r in fast[1]] == [(r.reason, r.detail, r.raw) for r in careful[1]]


odd_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()  # NaN and infinities too (json.dumps writes them as NaN, Infinity)
    | st.text(max_size=12)  # NUL, lone surrogates, anything
    | st.sampled_from(["94", "2026-11-23T08:15:02Z", "1e2", "%", "/min", "mg/dL", "glucose", "spo2", ""]),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)
fields = st.sampled_from([*VALID, "received_at", "extra"])
observation_fields = st.sampled_from(["code", "value", "unit", "source", "extra"])


@given(field=fields, value=odd_values)
def test_a_field_with_any_value(field: str, value: object) -> None:
    same_answer(json.dumps(VALID | {field: value}).encode())


@given(field=observation_fields, value=odd_values, which=st.integers(0, 1))
def test_an_observation_field_with_any_value(field: str, value: object, which: int) -> None:
    document = json.loads(json.dumps(VALID))
    document["observations"][which][field] = value
    same_answer(json.dumps(document).encode())


@given(field=fields)
def test_a_field_missing(field: str) -> None:
    same_answer(json.dumps({k: v for k, v in VALID.items() if k != field}).encode())


@given(at=st.integers(0, 200), byte=st.binary(min_size=1, max_size=3), replace=st.booleans())
def test_bytes_changed_anywhere(at: int, byte: bytes, replace: bool) -> None:
    payload = json.dumps(VALID, separators=(",", ":")).encode()
    at = min(at, len(payload))
    same_answer(payload[:at] + byte + payload[at + (len(byte) if replace else 0) :])


@pytest.mark.parametrize(
    "payload",
    [
        b"\xef\xbb\xbf" + json.dumps(VALID).encode(),  # a byte order mark
        json.dumps(VALID).encode() + b" x",  # trailing garbage
        json.dumps(VALID).encode() + b" \n",  # trailing white space
        b'{"seq": 1, ' + json.dumps(VALID).encode()[1:],  # a key twice
        json.dumps(VALID).encode().replace(b"oxi-000123", b"oxi-\xff\xfe"),  # not UTF-8
        json.dumps(VALID | {"context": {"note": "\ud800"}}).encode(),  # lone surrogate, escaped
        json.dumps(VALID | {"context": {"note": "a\u0000b"}}).encode(),  # NUL
        json.dumps(VALID | {"seq": 2**63}).encode(),
        json.dumps(VALID | {"seq": 1.5}).encode(),
        json.dumps(VALID | {"seq": True}).encode(),
        json.dumps(VALID | {"measured_at": 1_795_000_000}).encode(),
        json.dumps(VALID | {"measured_at": "2026-11-23T08:15:02"}).encode(),  # no offset
        json.dumps(VALID | {"measured_at": "2031-01-01T00:00:00Z"}).encode(),  # far future
        json.dumps(VALID | {"observations": [{"code": "spo2", "value": float("nan"), "unit": "%"}]}).encode(),
        json.dumps(
            VALID | {"observations": [{"code": "temp", "value": 37, "unit": "C"}]}
        ).encode(),  # unknown
        json.dumps(VALID | {"observations": [{"code": "spo2", "value": 94, "unit": "mg/dL"}]}).encode(),
        json.dumps(VALID | {"context": {"a": "x" * 5000}}).encode(),  # context too large
        b'{"a":' * 5000 + b"1" + b"}" * 5000,  # deep nesting
        b"{" + b" " * 70_000 + b"}",  # over the size limit
        b"{}",
    ],
)
def test_known_awkward_payloads(payload: bytes) -> None:
    same_answer(payload)
