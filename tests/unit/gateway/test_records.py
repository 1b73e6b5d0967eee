"""Judging Kafka's answers: a send never answered does not hold its acks for good."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.records import NoAnswer, outcomes, record_at_fault


async def test_a_send_never_answered_counts_as_failed_and_is_not_the_records_fault() -> None:
    loop = asyncio.get_running_loop()
    answered: asyncio.Future[Any] = loop.create_future()
    answered.set_result("metadata")
    silent: asyncio.Future[Any] = loop.create_future()
    results = await asyncio.wait_for(outcomes([answered, silent], within=0.1), 5)
    assert results[0] == "metadata"
    assert isinstance(results[1], NoAnswer)
    assert not record_at_fault(results[1]), "held and sent again, never dead-lettered"
    silent.set_exception(RuntimeError("late"))  # a late answer is read: no "never retrieved"
    await asyncio.sleep(0)


async def test_answers_in_time_are_returned_as_they_are() -> None:
    loop = asyncio.get_running_loop()
    later: asyncio.Future[Any] = loop.create_future()
    loop.call_later(0.05, later.set_result, "ok")
    assert await outcomes([later], within=5) == ["ok"]
