"""What the gateway sends to Kafka for one MQTT message, and how it judges Kafka's answers."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from aiokafka.errors import (
    CorruptRecordException,
    InvalidTimestampError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    UnsupportedForMessageFormatError,
)

from gateway.spool import Mark
from telehealth.contracts import DeadLetter


@dataclass
class Outgoing:
    topic: str
    key: bytes
    value: bytes
    #: set on dead letters: a letter Kafka refuses is resent once with a shorter raw prefix
    letter: DeadLetter | None = None
    #: what the record stands for in the store (the spool keeps it until stored)
    mark: Mark | None = None


#: What Kafka answers when the record itself is refused (its size, its format, its key or
#: timestamp): resending it cannot help, so it becomes a `kafka_rejected` dead letter.
RECORD_FAULTS: tuple[type[BaseException], ...] = (
    MessageSizeTooLargeError,
    RecordTooLargeError,
    RecordListTooLargeError,
    CorruptRecordException,
    InvalidTimestampError,
    UnsupportedForMessageFormatError,
)


def record_at_fault(exc: BaseException) -> bool:
    """Kafka refused the record for what it is (e.g. too large), not because Kafka is away.

    Every other error of the broker or the client (aiokafka's `retriable` ones: not leader,
    unknown topic, node not ready, request timed out; and the rest: unknown server error,
    broker unavailable, timeouts) is a broker fault: the reading is held and resent, never
    blamed. An exception from outside Kafka (a bug on our side while sending this record) is
    the record's: it is dead-lettered with the error, rather than holding every device back.
    """
    if isinstance(exc, RECORD_FAULTS):
        return True
    return not isinstance(exc, KafkaError) and isinstance(exc, Exception)


@dataclass
class Pending:
    message: mqtt.MQTTMessage
    records: list[Outgoing]
    sends: list[asyncio.Future[Any]]


def failed_future(exc: BaseException) -> asyncio.Future[Any]:
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    future.set_exception(exc)
    return future


def outcome(future: asyncio.Future[Any]) -> Any:
    if future.cancelled():
        return asyncio.CancelledError()
    return future.exception() or future.result()


async def outcomes(sends: list[asyncio.Future[Any]]) -> list[Any]:
    """`gather(..., return_exceptions=True)`, without its extra future and callbacks per
    message when Kafka has already answered every send (the common case under load)."""
    if all(f.done() for f in sends):
        return [outcome(f) for f in sends]
    return await asyncio.gather(*sends, return_exceptions=True)
