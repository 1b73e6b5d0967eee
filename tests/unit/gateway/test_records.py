"""Judging Kafka's answers: a send never answered does not hold its acks for good."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from gateway.records import BrokerEpoch, NoAnswer, Outgoing, Pending, outcomes, record_at_fault
from gateway.spool import READING, Mark, Spool


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


def _pending(seq: int, epoch: int) -> Pending:
    message = mqtt.MQTTMessage(mid=seq, topic=b"telehealth/v1/devices/oxi-1/readings")
    record = Outgoing("telehealth.readings", b"oxi-1", b"{}", mark=Mark(READING, "oxi-1", seq))
    return Pending(message, [record], [], epoch)


async def test_a_group_sent_to_a_broker_since_lost_is_sent_again_before_it_is_spooled(tmp_path: Path) -> None:
    """The keeper replays the spool to a broker that lost its records, under the epoch's lock. A
    group the lost broker accepted but not yet spooled would miss that replay and be
    acknowledged for good: it is sent again first, and spooled only once that is done."""
    spool = Spool(tmp_path / "spool.sqlite3", 1000)
    broker = BrokerEpoch()
    old, current = _pending(1, epoch=0), _pending(2, epoch=0)
    sent_again: list[list[int]] = []

    async def send_again(stale: list[Pending]) -> None:
        sent_again.append([item.message.mid for item in stale])

    async with broker.lock:  # the keeper found a new broker and is replaying the spool
        broker.n += 1
        current.epoch = broker.n  # sent after the bump
        spooling = asyncio.create_task(broker.spool([old, current], spool, send_again))
        await asyncio.sleep(0.05)
        assert not spooling.done() and spool.rows == 0, "nothing is spooled during the replay"
    await asyncio.wait_for(spooling, 5)
    assert sent_again == [[1]] and old.epoch == broker.n
    assert spool.rows == 2


async def test_a_group_of_the_current_broker_is_spooled_as_it_is(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.sqlite3", 1000)
    broker = BrokerEpoch(n=3)

    async def send_again(stale: list[Pending]) -> None:
        raise AssertionError(f"sent again: {stale}")

    await broker.spool([_pending(1, epoch=3), _pending(2, epoch=3)], spool, send_again)
    assert spool.rows == 2
