"""Records taken from Kafka while a batch is in flight, and urgent ones stored at once.

A batch spends most of its time waiting on PostgreSQL. Meanwhile the processor keeps taking
what the consumer has fetched and decodes it, so the next batch starts decoded; taking it also
lets aiokafka fetch on, as it fetches a partition again only once its fetched records are
taken. When something taken may be urgent for a patient with no device in the batch in flight,
that patient's readings taken so far are stored and alerted on in a transaction of their own
(`Pipeline.express`), beside the batch, instead of after it.

Everything taken stays in the next batch, which finds the express readings already stored
(duplicates: not stored, alerted on or decided twice), so an express transaction that fails,
or a crash at any point, loses nothing. Offsets are committed per batch, for its own records.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata, TopicPartition

from processor.decode import Batch, decode
from processor.pipeline import Pipeline
from telehealth.settings import Settings

log = logging.getLogger(__name__)

Records = list[ConsumerRecord[Any, Any]]


class Ahead:
    """What was taken ahead of the next batch: the records and what they decoded to."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        pipeline: Pipeline,
        settings: Settings,
        alerted: Callable[[], Awaitable[None]],
    ) -> None:
        self._consumer = consumer
        self._pipeline = pipeline
        self._settings = settings
        self._alerted = alerted
        self.records: Records = []
        self.batch = Batch()

    def __len__(self) -> int:
        return len(self.records)

    def add(self, records: Records) -> Batch:
        """Decode `records` and hold them after what is held; returns what they decoded to."""
        decoded = decode(records, self._settings)
        self.records += records
        self.batch.extend(decoded)
        return decoded

    def take(self, assigned: set[TopicPartition]) -> tuple[Records, Batch]:
        """Everything held, as the next batch, and nothing held after; records of partitions
        no longer `assigned` (a rebalance moved them) are left to their new owner."""
        records, batch = self.records, self.batch
        self.records, self.batch = [], Batch()
        kept = [r for r in records if TopicPartition(r.topic, r.partition) in assigned]
        if len(kept) < len(records):
            log.info("%d record(s) taken ahead now belong to another processor", len(records) - len(kept))
            records, batch = kept, decode(kept, self._settings)
        return records, batch

    async def while_in_flight(self, work: asyncio.Future[Any], busy_devices: set[str]) -> None:
        """Take and decode records until `work` (the batch in flight, whose devices are
        `busy_devices`) is done, or a whole batch is held."""
        room = self._settings.processor_batch_max
        while not work.done() and len(self.records) < room:
            getter = asyncio.ensure_future(
                self._consumer.getmany(timeout_ms=1000, max_records=room - len(self.records))
            )
            await asyncio.wait({work, getter}, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                # Safe: aiokafka hands records out only as the call returns, never before.
                getter.cancel()
                await asyncio.wait({getter})
            if getter.cancelled():
                return
            taken = [r for part in getter.result().values() for r in part]
            if not taken:
                continue
            decoded = self.add(taken)
            if self._settings.processor_express and decoded.readings:
                await self._express(decoded, busy_devices)

    async def _express(self, decoded: Batch, busy_devices: set[str]) -> None:
        try:
            if await self._pipeline.express(self.batch, decoded.readings, busy_devices):
                await self._alerted()
        except Exception as exc:  # an optimisation only: the next batch stores these anyway
            name = type(exc).__name__
            log.warning("urgent readings not stored ahead (%s: %s); the next batch stores them", name, exc)


def offsets(records: Records) -> dict[TopicPartition, OffsetAndMetadata]:
    """The offsets to commit once `records` are durable: one past the last of each partition."""
    last: dict[TopicPartition, int] = {}
    for r in records:
        tp = TopicPartition(r.topic, r.partition)
        last[tp] = max(last.get(tp, -1), r.offset)
    return {tp: OffsetAndMetadata(offset + 1, "") for tp, offset in last.items()}
