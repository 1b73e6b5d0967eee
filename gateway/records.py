"""What the gateway sends to Kafka for one MQTT message, and how it judges Kafka's answers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from aiokafka.errors import (
    CorruptRecordException,
    InvalidTimestampError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    UnsupportedForMessageFormatError,
)

from gateway.spool import Mark, Spool
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
    #: the broker generation (`BrokerEpoch.n`) when its records were sent
    epoch: int = 0


@dataclass
class BrokerEpoch:
    """Which Kafka broker the sends went to. The keeper bumps `n`, holding `lock`, when it finds
    a broker that lost its records and replays the spool to it; the acker spools a group under
    the same lock, and only once its records were sent in the current generation. A group the
    lost broker had accepted, spooled after that replay, would be acknowledged and never
    replayed: it is sent again first."""

    n: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def spool(
        self, group: list[Pending], spool: Spool, send_again: Callable[[list[Pending]], Awaitable[None]]
    ) -> None:
        """Spool the group once none of it was sent before the current generation; what was is
        sent again (`send_again` returns once Kafka accepted it) and checked again."""
        while True:
            async with self.lock:
                if not (stale := [item for item in group if item.epoch != self.n]):
                    await spool.add(spool_rows(group))
                    return
            for item in stale:
                item.epoch = self.n
            await send_again(stale)


def spool_rows(group: list[Pending]) -> list[tuple[Any, ...]]:
    """The group's records that the spool keeps until they are stored (those with a mark)."""
    return [(r.topic, r.key, r.value, r.mark) for item in group for r in item.records if r.mark]


def failed_future(exc: BaseException) -> asyncio.Future[Any]:
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    future.set_exception(exc)
    return future


def outcome(future: asyncio.Future[Any]) -> Any:
    if future.cancelled():
        return asyncio.CancelledError()
    return future.exception() or future.result()


class NoAnswer(KafkaTimeoutError):  # type: ignore[misc]  # aiokafka is untyped
    """A send Kafka did not answer in time: judged failed and sent again (the copy that may
    still land is absorbed by the store, which keeps a reading once)."""


async def outcomes(sends: list[asyncio.Future[Any]], within: float | None = None) -> list[Any]:
    """`gather(..., return_exceptions=True)`, without its extra future and callbacks per
    message when Kafka has already answered every send (the common case under load). A send
    still unanswered after `within` seconds counts as `NoAnswer`: after a broker restart a
    send was seen never to be answered, and the acks it held stayed held for good."""
    if all(f.done() for f in sends):
        return [outcome(f) for f in sends]
    await asyncio.wait(sends, timeout=within)
    results = []
    for f in sends:
        if f.done():
            results.append(outcome(f))
        else:
            f.add_done_callback(outcome)  # a late answer is read, never left unretrieved
            results.append(NoAnswer(f"no answer from Kafka within {within:g} s"))
    return results
