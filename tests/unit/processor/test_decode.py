"""A dead letter's identity survives a Kafka restart: offsets start at 0 again then."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiokafka.structs import ConsumerRecord

from processor.decode import decode, record_letter
from telehealth.contracts import DeadLetter, Reason
from telehealth.settings import Settings

SETTINGS = Settings(_env_file=None)  # type: ignore[call-arg]


def letter(raw: bytes = b"not json") -> DeadLetter:
    return DeadLetter.capture(
        Reason.UNPARSEABLE,
        "bad bytes",
        source_topic="telehealth/v1/devices/d-1/readings",
        device_id="d-1",
        received_at=datetime.now(UTC),
        raw=raw,
    )


def at(offset: int, value: bytes, timestamp: int = 1_700_000_000_000) -> ConsumerRecord[Any, Any]:
    topic = SETTINGS.deadletter_topic
    return ConsumerRecord(topic, 0, offset, timestamp, 0, b"d-1", value, None, len(b"d-1"), len(value), [])


def test_letters_at_the_same_offset_of_two_broker_lifetimes_are_two_letters() -> None:
    """The same bytes, rejected before and after a restart, land at offset 0 both times."""
    first, second = letter(), letter()
    origins = [
        decode([at(0, lt.model_dump_json().encode())], SETTINGS).letters[0].origin for lt in (first, second)
    ]
    assert origins[0] != origins[1]
    assert all(o.startswith("letter:") for o in origins)


def test_a_replayed_letter_keeps_its_identity() -> None:
    """Resent by the gateway (held across an outage, or replayed from its spool) at another
    offset: still one letter."""
    one = letter().model_dump_json().encode()
    assert (
        decode([at(0, one)], SETTINGS).letters[0].origin == decode([at(7, one)], SETTINGS).letters[0].origin
    )


def test_a_letter_without_an_id_is_known_by_position_and_time() -> None:
    old = letter().model_copy(update={"letter_id": None}).model_dump_json().encode()
    before = decode([at(3, old, timestamp=1)], SETTINGS).letters[0].origin
    after = decode([at(3, old, timestamp=2)], SETTINGS).letters[0].origin
    assert before != after


def test_undecodable_records_of_two_broker_lifetimes_are_two_letters() -> None:
    assert record_letter(at(0, b"x", 1), Reason.UNPARSEABLE, "d").origin != (
        record_letter(at(0, b"x", 2), Reason.UNPARSEABLE, "d").origin
    )


def test_a_letter_id_cannot_smuggle_text() -> None:
    document = letter().model_dump() | {"letter_id": "x'; DROP TABLE"}
    assert (
        decode([at(0, DeadLetter.model_construct(**document).model_dump_json().encode())], SETTINGS)
        .letters[0]
        .letter.reason
        == Reason.SCHEMA_INVALID
    )
