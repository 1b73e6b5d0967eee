"""Isolate a poison record: a batch that fails for what is in it is split until the record is found.

A database outage (`OperationalError`) or an unreachable registry is not the batch's fault:
it propagates and the caller retries the whole batch, as before. Any other failure is
taken to come from the data: the batch is bisected, the good halves are stored, and the
one record that still fails on its own becomes a dead letter with the error as its reason.
Each half commits on its own; offsets are committed by the caller once all are durable, so
a crash part way replays the batch and idempotency absorbs what already landed.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import psycopg
from aiokafka.structs import ConsumerRecord

from processor.decode import Batch
from processor.pipeline import Report
from telehealth.storage.devices import RegistryUnavailable

log = logging.getLogger(__name__)

#: failures of the surroundings, never of one record
OUTAGES: tuple[type[BaseException], ...] = (psycopg.OperationalError, RegistryUnavailable)

Records = list[ConsumerRecord[Any, Any]]


class Stages(Protocol):
    async def process(self, records: Records, decoded: Batch | None = None) -> Report: ...

    async def poison(self, record: ConsumerRecord[Any, Any], error: Exception) -> None: ...


async def isolate(stages: Stages, records: Records, decoded: Batch | None = None) -> Report:
    """Process `records` (`decoded`: decoded ahead); on a data-borne failure bisect and
    dead-letter the culprit(s)."""
    try:
        return await stages.process(records, decoded)
    except OUTAGES:
        raise
    except Exception as exc:
        if len(records) == 1:
            [record] = records
            log.error(
                "record %s:%d:%d cannot be processed (%s: %s); dead-lettering it",
                record.topic,
                record.partition,
                record.offset,
                type(exc).__name__,
                exc,
            )
            await stages.poison(record, exc)
            return Report(1, 0, 0, 1, 0)
        log.warning("batch of %d failed (%s); splitting it to find the record", len(records), exc)
        middle = len(records) // 2
        first = await isolate(stages, records[:middle])
        second = await isolate(stages, records[middle:])
        return Report(*(a + b for a, b in zip(_fields(first), _fields(second), strict=True)))


def _fields(report: Report) -> tuple[int, ...]:
    return (report.received, report.stored, report.duplicates, report.dead_letters, report.alerts)
