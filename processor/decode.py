"""Stage 1: Kafka records to typed items; what does not decode becomes a dead letter.

Pure (no I/O): the service decodes a batch's records ahead, while the batch before it waits
on PostgreSQL (`processor.ahead`), and the pipeline decodes only what it was not given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka.structs import ConsumerRecord
from pydantic import ValidationError

from telehealth.contracts import AcceptedReading, DeadLetter, Reason, StatusEvent, describe, parse_accepted
from telehealth.settings import Settings


@dataclass
class LetterAt:
    letter: DeadLetter
    #: unique origin ("letter:<letter id>", "orphan:<device>:<seq>", ...): replays record a
    #: letter once, and it survives a broker restart (offsets start at 0 again then)
    origin: str


@dataclass
class Batch:
    readings: list[AcceptedReading] = field(default_factory=list)
    letters: list[LetterAt] = field(default_factory=list)
    statuses: list[StatusEvent] = field(default_factory=list)

    def extend(self, later: Batch) -> None:
        """Append what was decoded from later records (each partition's order is kept)."""
        self.readings += later.readings
        self.letters += later.letters
        self.statuses += later.statuses

    def copy(self) -> Batch:
        return Batch(list(self.readings), list(self.letters), list(self.statuses))

    def devices(self) -> set[str]:
        return {r.device_id for r in self.readings} | {s.device_id for s in self.statuses}


def decode(records: list[ConsumerRecord[Any, Any]], settings: Settings) -> Batch:
    """Kafka records to typed items, in order; what does not decode becomes a dead letter."""
    batch = Batch()
    for record in records:
        try:
            if record.topic == settings.readings_topic:
                batch.readings.append(parse_accepted(record.value))
            elif record.topic == settings.deadletter_topic:
                letter = DeadLetter.model_validate_json(record.value)
                batch.letters.append(LetterAt(letter, letter_origin(letter, record)))
            elif record.topic == settings.status_topic:
                batch.statuses.append(StatusEvent.model_validate_json(record.value))
        except ValidationError as exc:
            reason, detail = describe(exc)
            batch.letters.append(record_letter(record, reason, f"processor could not decode: {detail}"))
        except Exception as exc:  # any record, however malformed, is isolated as a letter
            detail = f"processor could not decode: {type(exc).__name__}: {exc}"
            batch.letters.append(record_letter(record, Reason.INTERNAL_ERROR, detail))
    return batch


def position(record: ConsumerRecord[Any, Any]) -> str:
    """A record's place in Kafka, with its timestamp: offsets alone repeat once a broker that
    lost its data (the embedded one keeps memory only) starts counting from 0 again."""
    return f"{record.topic}:{record.partition}:{record.offset}@{record.timestamp}"


def letter_origin(letter: DeadLetter, record: ConsumerRecord[Any, Any]) -> str:
    """The letter's own id; letters from before ids were given are known by their position."""
    if letter.letter_id:
        return f"letter:{letter.letter_id}"
    return f"kafka:{position(record)}"


def record_letter(
    record: ConsumerRecord[Any, Any], reason: Reason, detail: str, kind: str = "undecodable"
) -> LetterAt:
    """A Kafka record as a dead letter, keyed by its position so a replay records it once."""
    raw = record.value if isinstance(record.value, bytes) else b""
    letter = DeadLetter.capture(
        reason,
        detail,
        source_topic=record.topic,
        device_id=(record.key or b"").decode(errors="replace") or None,
        received_at=datetime.now(UTC),
        raw=raw,
    )
    return LetterAt(letter, f"{kind}:{position(record)}")
