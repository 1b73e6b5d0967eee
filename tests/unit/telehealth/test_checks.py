import json
from datetime import UTC, datetime, timedelta
from uuid import uuid4

from hypothesis import given
from hypothesis import strategies as st

from telehealth.checks import check_readings, check_status
from telehealth.contracts import (
    AcceptedReading,
    DeadLetter,
    Reason,
    StatusEvent,
    accept,
    accepted_json,
    parse_payload,
)
from telehealth.storage.devices import DeviceEntry

NOW = datetime(2026, 11, 23, 8, 16, tzinfo=UTC)
REGISTRY = {
    "cgm-1": DeviceEntry("cgm-1", uuid4(), "cgm", revoked=False),
    "cgm-2": DeviceEntry("cgm-2", uuid4(), "cgm", revoked=False),
    "cgm-old": DeviceEntry("cgm-old", uuid4(), "cgm", revoked=True),
}


def payload(device_id: str = "cgm-1", seq: int = 1) -> bytes:
    return json.dumps(
        {
            "device_id": device_id,
            "seq": seq,
            "measured_at": "2026-11-23T08:15:00+00:00",
            "observations": [{"code": "glucose", "value": 100, "unit": "mg/dL", "source": "cgm"}],
        }
    ).encode()


def test_own_reading_is_accepted_and_stamped() -> None:
    verdict = check_readings("telehealth/v1/devices/cgm-1/readings", payload(), NOW, REGISTRY.get)
    [accepted] = verdict.accepted
    assert verdict.rejected == []
    assert verdict.received_at == NOW
    forwarded = AcceptedReading.model_validate_json(accepted_json(accepted, NOW))
    assert forwarded.received_at == NOW
    assert forwarded == accept(accepted, NOW)


_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=12)


@given(
    seq=st.integers(0, 2**63 - 1),
    value=st.floats(min_value=-1e12, max_value=1e12, allow_nan=False),
    source=st.sampled_from([None, "cgm", "smbg"]),
    battery=st.one_of(st.none(), st.integers(0, 100)),
    context=st.dictionaries(_text, st.one_of(st.booleans(), st.integers(-5, 5), _text), max_size=3),
    micros=st.integers(0, 999_999),
)
def test_the_forwarded_json_is_the_accepted_models_own(
    seq: int, value: float, source: str | None, battery: int | None, context: dict[str, object], micros: int
) -> None:
    """The gateway writes the Kafka value without building the model; it must be the same bytes."""
    observation: dict[str, object] = {"code": "glucose", "value": value, "unit": "mmol/L"}
    if source is not None:
        observation["source"] = source
    document = {
        "device_id": "cgm-1",
        "seq": seq,
        "measured_at": "2026-11-23T08:15:00+01:00",
        "observations": [observation],
        "battery_pct": battery,
        "context": context,
    }
    [reading], [] = parse_payload(json.dumps(document).encode(), NOW)
    arrived = NOW + timedelta(microseconds=micros)
    assert accepted_json(reading, arrived) == accept(reading, arrived).model_dump_json().encode()


def test_publishing_under_another_devices_id_is_rejected() -> None:
    verdict = check_readings("telehealth/v1/devices/cgm-2/readings", payload("cgm-1"), NOW, REGISTRY.get)
    assert verdict.accepted == []
    [letter] = verdict.rejected
    assert letter.reason is Reason.DEVICE_MISMATCH
    assert letter.device_id == "cgm-2"


def test_unknown_and_revoked_devices_are_rejected_with_raw_bytes() -> None:
    for device, reason in (("cgm-9", Reason.UNKNOWN_DEVICE), ("cgm-old", Reason.REVOKED_DEVICE)):
        raw = payload(device)
        verdict = check_readings(f"telehealth/v1/devices/{device}/readings", raw, NOW, REGISTRY.get)
        [letter] = verdict.rejected
        assert (letter.reason, letter.raw) == (reason, raw)


def test_dead_letter_round_trips_raw_bytes_through_json() -> None:
    raw = b"\x00\xffnot json"
    verdict = check_readings("telehealth/v1/devices/cgm-1/readings", raw, NOW, REGISTRY.get)
    [letter] = verdict.rejected
    assert letter.reason is Reason.UNPARSEABLE
    assert DeadLetter.model_validate_json(letter.model_dump_json()).raw == raw


def test_foreign_topic_is_rejected() -> None:
    verdict = check_readings("elsewhere/cgm-1", payload(), NOW, REGISTRY.get)
    assert [r.reason for r in verdict.rejected] == [Reason.BAD_TOPIC]


def test_status_messages() -> None:
    ok = check_status(
        "telehealth/v1/devices/cgm-1/status", b'{"state":"offline","battery_pct":9}', NOW, REGISTRY.get
    )
    assert isinstance(ok, StatusEvent) and ok.state == "offline" and ok.battery_pct == 9
    bad = check_status("telehealth/v1/devices/cgm-1/status", b'{"state":"asleep"}', NOW, REGISTRY.get)
    assert isinstance(bad, DeadLetter) and bad.reason is Reason.SCHEMA_INVALID
