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


class FetcherStopped(KafkaError):  # type: ignore[misc]  # aiokafka is untyped
    """The consumer's background fetching ended: a server fault, so the consumer is built again."""


def fetcher_stopped(consumer: AIOKafkaConsumer) -> bool:
    """Whether aiokafka's background fetch task has ended while the consumer runs. It ends for
    good on a `CancelledError` it swallows (aio-libs/aiokafka#983, still so in 0.14), and from
    then on `getmany` returns nothing, silently: at a steady 2,000 readings/s the processor
    stopped storing after about 8 minutes, twice, with the broker serving other consumers.
    aiokafka has no public way to ask, hence its private attributes (absent: assume running)."""
    task = getattr(getattr(consumer, "_fetcher", None), "_fetch_task", None)
    return isinstance(task, asyncio.Future) and task.done()


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
