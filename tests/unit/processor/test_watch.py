"""How the processor tells a stuck consumer: an ended fetch task, or nothing taken for a while
while the broker holds records past the committed offsets."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from processor.watch import FETCH_WAIT_MAX_MS, FetcherStopped, Stall, fetcher_stopped, longer_fetch_wait
from telehealth.settings import Settings


async def test_only_an_ended_fetch_task_counts_as_stopped() -> None:
    running: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    ended.set_result(None)
    assert not fetcher_stopped(SimpleNamespace())
    assert not fetcher_stopped(SimpleNamespace(_fetcher=SimpleNamespace(_fetch_task=None)))
    assert not fetcher_stopped(SimpleNamespace(_fetcher=SimpleNamespace(_fetch_task=running)))
    assert fetcher_stopped(SimpleNamespace(_fetcher=SimpleNamespace(_fetch_task=ended)))
    running.cancel()


class FakeConsumer:
    """What `Stall` asks of a consumer: its partitions, the broker's end and committed offsets."""

    def __init__(self, ends: dict[str, int], committed: dict[str, int | None]) -> None:
        self.ends, self._committed = ends, committed
        self.asked = 0

    def assignment(self) -> set[str]:
        return set(self.ends)

    async def end_offsets(self, partitions: list[str]) -> dict[str, int]:
        self.asked += 1
        return {p: self.ends[p] for p in partitions}

    async def committed(self, partition: str) -> int | None:
        return self._committed[partition]


async def test_a_consumer_taking_nothing_while_records_wait_is_stuck() -> None:
    consumer = FakeConsumer({"p0": 900, "p1": 500}, {"p0": 700, "p1": 500})
    stall = Stall(consumer, stall_s=0.0)  # type: ignore[arg-type]
    with pytest.raises(FetcherStopped, match="200 record"):
        await stall.check(0)


async def test_a_consumer_that_takes_records_or_has_nothing_waiting_is_not_stuck() -> None:
    caught_up = FakeConsumer({"p0": 900}, {"p0": 900})
    await Stall(caught_up, stall_s=0.0).check(0)  # type: ignore[arg-type]
    behind = FakeConsumer({"p0": 900}, {"p0": None})
    await Stall(behind, stall_s=0.0).check(5)  # type: ignore[arg-type]  # it just took 5
    assert behind.asked == 0  # and did not ask the broker anything
    patient = Stall(behind, stall_s=60.0)  # type: ignore[arg-type]
    await patient.check(0)  # idle, but not yet for 60 s
    assert behind.asked == 0


def test_each_successor_waits_twice_as_long_up_to_aiokafkas_default() -> None:
    settings = Settings(processor_batch_wait_ms=20)
    waits = []
    for _ in range(7):
        settings = longer_fetch_wait(settings)
        waits.append(settings.processor_batch_wait_ms)
    assert waits == [40, 80, 160, 320, FETCH_WAIT_MAX_MS, FETCH_WAIT_MAX_MS, FETCH_WAIT_MAX_MS]
