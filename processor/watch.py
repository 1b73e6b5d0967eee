"""What the processor watches of its consumer: its backlog, and whether it still fetches."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from processor import metrics
from processor.ahead import Ahead
from telehealth.heartbeat import Progress
from telehealth.settings import Settings

log = logging.getLogger(__name__)

#: the longest fetch wait a stuck consumer's successor is given (aiokafka's default)
FETCH_WAIT_MAX_MS = 500
#: a consumer that took nothing for this long while its group's committed offsets are behind
#: the broker's end offsets is stuck, and is built again
STALL_S = 20.0


class FetcherStopped(KafkaError):  # type: ignore[misc]  # aiokafka is untyped
    """The consumer no longer fetches: a server fault, so the consumer is built again (from the
    committed offsets: what was not durable replays, and the store drops duplicates)."""


def fetcher_stopped(consumer: AIOKafkaConsumer) -> bool:
    """Whether aiokafka's background fetch task has ended while the consumer runs. It ends for
    good on a `CancelledError` it swallows (aio-libs/aiokafka#983, still so in 0.14), and from
    then on `getmany` returns nothing, silently. aiokafka has no public way to ask, hence its
    private attributes (absent: assume running)."""
    task = getattr(getattr(consumer, "_fetcher", None), "_fetch_task", None)
    return isinstance(task, asyncio.Future) and task.done()


class Stall:
    """A consumer that gets nothing while the broker holds records it has not committed.

    At a steady 2,000 readings/s the embedded Tansu (memory storage) takes longer to answer a
    fetch the more it holds, and answers empty when that exceeds the fetch's wait: with the
    processor's 20 ms it stopped storing after 8-9 minutes in four runs (at 727,846 to 962,232
    readings), its fetch task still running. Against that broker, from the same committed
    offsets, 4 s of fetching gave 0 records with a 20 ms wait, 681 with 50 ms, 32,815 with
    100 ms and 303,013 with 500 ms. This notices the state (only after `STALL_S` without a
    record does it ask the broker anything), and the consumer is built again with twice the
    wait (`longer_fetch_wait`). Apache Kafka answers as soon as it has data."""

    def __init__(self, consumer: AIOKafkaConsumer, stall_s: float = STALL_S) -> None:
        self._consumer = consumer
        self._stall_s = stall_s
        self._since = time.monotonic()

    async def check(self, took: int) -> None:
        """Raise `FetcherStopped` if the consumer is stuck; `took`: records it just gave."""
        now = time.monotonic()
        if took:
            self._since = now
            return
        if fetcher_stopped(self._consumer):
            raise FetcherStopped("aiokafka's fetch task ended; nothing would be fetched again")
        if now - self._since < self._stall_s:
            return
        self._since = now  # ask at most once per `stall_s`
        assigned = list(self._consumer.assignment())
        if not assigned:
            return
        ends = await self._consumer.end_offsets(assigned)
        behind = 0
        for tp in assigned:
            committed = await self._consumer.committed(tp)
            behind += max(0, ends.get(tp, 0) - (committed or 0))
        if behind:
            raise FetcherStopped(
                f"took nothing for {self._stall_s:.0f} s while the broker holds {behind} record(s)"
                " past the committed offsets"
            )


def longer_fetch_wait(settings: Settings) -> Settings:
    """The settings for a stuck consumer's successor: twice the fetch wait, at most
    `FETCH_WAIT_MAX_MS`. Latency rises only on a broker that needed it."""
    wait = min(FETCH_WAIT_MAX_MS, 2 * settings.processor_batch_wait_ms)
    log.warning(
        "the next consumer waits up to %d ms per fetch (was %d)", wait, settings.processor_batch_wait_ms
    )
    return settings.model_copy(update={"processor_batch_wait_ms": wait})


class Lag:
    """The processor's backlog for its heartbeat: records in flight and taken ahead, plus what
    the broker holds beyond our position on the partitions we own (refreshed at most once a
    second)."""

    def __init__(self, consumer: AIOKafkaConsumer, ahead: Ahead) -> None:
        self._consumer = consumer
        self._ahead = ahead
        self.in_flight = 0
        self.behind = 0
        self._next = 0.0
        self.progress = Progress(lambda: self.in_flight + len(self._ahead) + self.behind)

    async def refresh(self) -> None:
        if time.monotonic() < self._next:
            return
        self._next = time.monotonic() + 1.0
        behind = 0
        for tp in self._consumer.assignment():
            highwater = self._consumer.highwater(tp)
            if highwater is None:
                continue
            with contextlib.suppress(KafkaError, TimeoutError):  # position unknown: skip it
                position = await asyncio.wait_for(self._consumer.position(tp), timeout=0.2)
                behind += max(0, highwater - position)
        self.behind = behind
        metrics.LAG.set(behind)
