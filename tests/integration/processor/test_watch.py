"""The processor notices when aiokafka's background fetching has ended (aio-libs/aiokafka#983:
the task swallows a `CancelledError` and `getmany` then returns nothing for ever). Checked
against the installed aiokafka and a real broker, since the probe reads private attributes:
if aiokafka renamed them, the watch would never fire and this test would say so."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer

from processor.watch import fetcher_stopped
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
