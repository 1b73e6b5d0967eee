"""Bisecting a failing batch: the poison record is dead-lettered, every other record processed once
it is in a batch that succeeds, and outages still fail the whole batch for a retry."""

from typing import Any

import psycopg
import pytest
from aiokafka.structs import ConsumerRecord

from processor.decode import Batch
from processor.isolate import isolate
from processor.pipeline import Report


def record(offset: int) -> ConsumerRecord[Any, Any]:
    return ConsumerRecord("telehealth.readings", 0, offset, 0, 0, b"k", b"v", None, 1, 1, [])


class Stages:
    """Fails any batch holding a poison offset, like a transaction that one row aborts."""

    def __init__(self, poison: set[int], error: Exception | None = None) -> None:
        self.bad = poison
        self.error = error or psycopg.DataError("invalid byte sequence")
        self.committed: list[int] = []
        self.letters: list[tuple[int, str]] = []
        self.attempts = 0
        self.decoded: list[Batch | None] = []

    async def process(self, records: list[ConsumerRecord[Any, Any]], decoded: Batch | None = None) -> Report:
        self.attempts += 1
        self.decoded.append(decoded)
        if any(r.offset in self.bad for r in records):
            raise self.error
        self.committed += [r.offset for r in records]
        return Report(len(records), len(records), 0, 0, 0)

    async def poison(self, rec: ConsumerRecord[Any, Any], error: Exception) -> None:
        self.letters.append((rec.offset, type(error).__name__))


async def test_clean_batch_is_processed_once() -> None:
    stages = Stages(set())
    report = await isolate(stages, [record(i) for i in range(100)])
    assert stages.attempts == 1 and report.stored == 100


@pytest.mark.parametrize("poison", [{0}, {57}, {99}, {3, 4}, {10, 60, 61, 99}])
async def test_poison_records_are_found_and_the_rest_stored_in_order(poison: set[int]) -> None:
    stages = Stages(poison)
    report = await isolate(stages, [record(i) for i in range(100)])
    assert sorted(o for o, _ in stages.letters) == sorted(poison)
    assert all(name == "DataError" for _, name in stages.letters)
    assert stages.committed == [i for i in range(100) if i not in poison]
    assert (report.received, report.stored, report.dead_letters) == (100, 100 - len(poison), len(poison))
    assert stages.attempts < 2 * len(poison) * 8 + 2  # logarithmic, not one retry per record


async def test_a_non_database_error_is_isolated_too() -> None:
    stages = Stages({5}, UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"))
    await isolate(stages, [record(i) for i in range(8)])
    assert stages.letters == [(5, "UnicodeEncodeError")]


async def test_an_outage_fails_the_whole_batch_for_a_retry() -> None:
    stages = Stages({5}, psycopg.OperationalError("connection refused"))
    with pytest.raises(psycopg.OperationalError):
        await isolate(stages, [record(i) for i in range(8)])
    assert stages.letters == [] and stages.committed == [] and stages.attempts == 1


async def test_what_was_decoded_ahead_serves_the_whole_batch_only() -> None:
    """The batch decoded ahead stands for all its records: the halves of a split decode their own."""
    stages = Stages({5})
    ahead = Batch()
    await isolate(stages, [record(i) for i in range(8)], ahead)
    assert stages.decoded[0] is ahead
    assert stages.decoded[1:] and all(d is None for d in stages.decoded[1:])
