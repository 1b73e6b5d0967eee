"""The processor notices when aiokafka's background fetching has ended (aio-libs/aiokafka#983:
the task swallows a `CancelledError` and `getmany` then returns nothing for ever). Checked
against the installed aiokafka and a real broker, since the probe reads private attributes:
if aiokafka renamed them, the watch would never fire and this test would say so."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer

from processor.watch import fetcher_stopped
from telehealth.kafka import ClusterWatch
from telehealth.settings import Settings


async def test_a_consumer_whose_fetch_task_ended_is_seen_as_stopped(settings: Settings) -> None:
    consumer = AIOKafkaConsumer(
        settings.readings_topic, bootstrap_servers=settings.kafka_bootstrap, group_id="watch-test"
    )
    assert not fetcher_stopped(consumer)  # not started: nothing to judge
    await consumer.start()
    try:
        await consumer.getmany(timeout_ms=200)
        assert not fetcher_stopped(consumer)
        task = consumer._fetcher._fetch_task
        task.cancel()  # how it ends in the wild: a CancelledError it swallows
        await asyncio.wait({task})
        assert fetcher_stopped(consumer)
        assert await consumer.getmany(timeout_ms=300) == {}  # silent, as in the stalled soaks
    finally:
        await consumer.stop()


async def _watch_for(cluster: ClusterWatch, settings: Settings, seconds: float) -> bool:
    """Whether the watch reports the broker replaced within `seconds`."""
    replaced = asyncio.Event()
    watching = asyncio.create_task(cluster.watch(settings, replaced, every_s=0.1))
    try:
        await asyncio.wait({watching}, timeout=seconds)
    finally:
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
    return replaced.is_set()


async def test_a_broker_replaced_between_two_consumers_is_noticed_by_the_second(settings: Settings) -> None:
    """The watch outlives a consumer: a consumer that failed before its watch saw the new
    broker leaves the id it knew, and its successor's watch compares with that, not with the
    new broker it meets first."""
    cluster = ClusterWatch()
    assert not await _watch_for(cluster, settings, 1.0)  # the first broker it sees: learnt
    current = cluster.known
    assert current
    assert not await _watch_for(cluster, settings, 1.0), "the same broker again is no replacement"

    cluster.known = "a-broker-that-lost-its-data"  # what the failed consumer had seen
    assert await _watch_for(cluster, settings, 10.0)
    assert cluster.known == current, "the new broker is the one known now"
    assert not await _watch_for(cluster, settings, 1.0), "the successor of the fresh consumer runs on"
