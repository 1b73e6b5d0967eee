"""What the processor watches of its consumer: its backlog, and whether it still fetches."""

from __future__ import annotations

import asyncio
import contextlib
import time

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from processor import metrics
from processor.ahead import Ahead
from telehealth.heartbeat import Progress

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

    At a steady 2,000 readings/s against the embedded Tansu, the processor's consumer stopped
    receiving after about 8 minutes in three runs (at 849,565, 962,155 and 962,232 readings
    stored), its fetch task still running, while a new consumer read on from the committed
    offsets at once: 264,169 records in 5 s. The cause is not found; this notices the state
    and has the consumer built again. Only after `STALL_S` without a record does it ask the
    broker anything (committed and end offsets of the assigned partitions)."""

    def __init__(self, consumer: AIOKafkaConsumer, stall_s: float = STALL_S) -> None:
        self._consumer = consumer
        self._stall_s = stall_s
        self._since = time.monotonic()

    async def check(self, took: int) -> None:
        """Raise `FetcherStopped` if the consumer is stuck; `took`: records it just gave."""
        now = time.monotonic()
        if took or fetcher_stopped(self._consumer):
            self._since = now
            if took:
                return
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
