import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telehealth.codes import CODES, MG_DL_PER_MMOL_L
from telehealth.contracts import MAX_BATCH, MAX_PAYLOAD_BYTES, Reason, parse_payload
from tests.factories import contract_example as reading


def encode(document: object) -> bytes:
    return json.dumps(document).encode()


def test_spec_example_parses() -> None:
    readings, rejections = parse_payload(encode(reading()))
    assert rejections == []
    [r] = readings
    assert (r.device_id, r.seq, r.battery_pct) == ("oxi-000123", 1042, 71)
    assert [o.code for o in r.observations] == ["spo2", "pulse"]
    assert r.measured_at.utcoffset() is not None


def test_a_code_repeated_within_one_reading_is_refused() -> None:
    """Two pulse values in one reading once reached the processor and failed its batch (an
    observation is known by device, seq and code); the contract refuses it at the edge."""
    twice = [{"code": "pulse", "value": 70, "unit": "/min"}, {"code": "pulse", "value": 72, "unit": "/min"}]
    readings, [rejection] = parse_payload(encode(reading(observations=twice)))
    assert readings == []
    assert rejection.reason is Reason.SCHEMA_INVALID and "repeated: pulse" in rejection.detail


def test_array_splits_good_from_bad_elements() -> None:
    bad = reading(seq=2, observations=[{"code": "spo2", "value": 94, "unit": "mmHg"}])
    readings, rejections = parse_payload(encode([reading(seq=1), bad, reading(seq=3)]))
    assert [r.seq for r in readings] == [1, 3]
    [rejected] = rejections
    assert rejected.reason is Reason.UNKNOWN_UNIT
    assert json.loads(rejected.raw)["seq"] == 2
    assert "mmHg" in rejected.detail


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\xfe not utf8", Reason.UNPARSEABLE),
        (b"{not json", Reason.UNPARSEABLE),
        (b"[]", Reason.SCHEMA_INVALID),
        (encode(reading(seq=-1)), Reason.SCHEMA_INVALID),
        # Numbers are JSON numbers: not true (which is 1 to Python), not text, not a float sequence.
        (encode(reading(seq=True)), Reason.SCHEMA_INVALID),
        (encode(reading(seq="1042")), Reason.SCHEMA_INVALID),
        (encode(reading(seq=1042.0)), Reason.SCHEMA_INVALID),
        (encode(reading(battery_pct=True)), Reason.SCHEMA_INVALID),
        (encode(reading(battery_pct="71")), Reason.SCHEMA_INVALID),
        (encode(reading(observations=[{"code": "spo2", "value": True, "unit": "%"}])), Reason.SCHEMA_INVALID),
        (encode(reading(observations=[{"code": "spo2", "value": "94", "unit": "%"}])), Reason.SCHEMA_INVALID),
        (encode(reading(measured_at=1_795_000_000)), Reason.SCHEMA_INVALID),  # Unix time, not RFC 3339
        (encode(reading(measured_at="2026-11-23T08:15:02")), Reason.SCHEMA_INVALID),
        (encode(reading(observations=[])), Reason.SCHEMA_INVALID),
        (encode(reading(battery_pct=101)), Reason.SCHEMA_INVALID),
        (encode(reading(extra_field=1)), Reason.SCHEMA_INVALID),
        (encode(reading(device_id="bad/id")), Reason.SCHEMA_INVALID),
        (encode(reading(observations=[{"code": "bp", "value": 1, "unit": "mmHg"}])), Reason.UNKNOWN_CODE),
        (encode(reading(observations=[{"code": "glucose", "value": 5, "unit": "%"}])), Reason.UNKNOWN_UNIT),
        (
            b'{"device_id":"a","seq":1,"measured_at":"2026-11-23T08:15:02Z",'
            b'"observations":[{"code":"spo2","value":NaN,"unit":"%"}]}',
            Reason.SCHEMA_INVALID,
        ),
        (
            encode(reading(observations=[{"code": "spo2", "value": 94, "unit": "%", "source": "cgm"}])),
            Reason.SCHEMA_INVALID,
        ),
        (encode([{}] * (MAX_BATCH + 1)), Reason.TOO_MANY_READINGS),
        (b" " * (MAX_PAYLOAD_BYTES + 1), Reason.OVERSIZED),
        (b"42", Reason.SCHEMA_INVALID),
    ],
)
def test_rejections_carry_a_reason(payload: bytes, reason: Reason) -> None:
    readings, rejections = parse_payload(payload)
    assert readings == []
    assert [r.reason for r in rejections] == [reason]
    assert rejections[0].detail


def test_numbers_a_device_may_send() -> None:
    """An integer value, a whole-number battery from a device that computes it, a fraction."""
    for document in (
        reading(battery_pct=71.0),
        reading(observations=[{"code": "spo2", "value": 94, "unit": "%"}]),
        reading(observations=[{"code": "spo2", "value": 94.5, "unit": "%"}]),
    ):
        readings, rejections = parse_payload(encode(document))
        assert rejections == [] and len(readings) == 1


def compact(i: int) -> dict[str, object]:
    return {
        "device_id": "cgm-1",
        "seq": i,
        "measured_at": "2026-11-23T08:15:02Z",
        "observations": [{"code": "glucose", "value": 6.1, "unit": "mmol/L"}],
    }


def test_largest_backlog_that_fits_64_kib_is_accepted() -> None:
    """Both limits hold; 500 compact readings need ~66 KB, so a device splits by size too."""
    fits = MAX_PAYLOAD_BYTES // len(json.dumps(compact(999), separators=(",", ":")).encode() + b",")
    payload = json.dumps([compact(i) for i in range(fits)], separators=(",", ":")).encode()
    assert len(payload) <= MAX_PAYLOAD_BYTES
    readings, rejections = parse_payload(payload)
    assert len(readings) == fits > 450 and rejections == []
    too_big = json.dumps([compact(i) for i in range(MAX_BATCH)], separators=(",", ":")).encode()
    assert [r.reason for r in parse_payload(too_big)[1]] == [Reason.OVERSIZED]


def test_glucose_units_convert_to_mmol() -> None:
    glucose = CODES["glucose"]
    assert glucose.to_canonical(180.0, "mg/dL") == pytest.approx(180 / MG_DL_PER_MMOL_L)
    assert glucose.to_canonical(5.5, "mmol/L") == 5.5
    assert CODES["pulse"].to_canonical(70, "bpm") == 70
    assert glucose.loinc_for("cgm") == "105272-9" and glucose.loinc_for("smbg") == "15074-8"


@pytest.mark.parametrize(
    ("code", "inside", "outside"),
    [
        ("glucose", (0.5, 40), (0.49, 40.1)),
        ("spo2", (50, 100), (49.9, 100.1)),
        ("pulse", (20, 300), (19, 301)),
    ],
)
def test_plausible_ranges_are_inclusive(
    code: str, inside: tuple[float, float], outside: tuple[float, float]
) -> None:
    spec = CODES[code]
    assert all(spec.is_plausible(v) for v in inside)
    assert not any(spec.is_plausible(v) for v in outside)


@given(st.binary(max_size=2048))
def test_arbitrary_bytes_never_raise_and_never_vanish(payload: bytes) -> None:
    readings, rejections = parse_payload(payload)
    assert readings or rejections


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@given(
    st.lists(st.one_of(json_values, st.builds(reading, seq=st.integers(0, 10**6))), min_size=1, max_size=20)
)
def test_every_array_element_is_accepted_or_rejected(items: list[object]) -> None:
    readings, rejections = parse_payload(encode(items))
    assert len(readings) + len(rejections) == len(items)
