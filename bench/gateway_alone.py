"""The gateway's own rate: MQTT -> gateway -> Kafka with no processor running.

Timed from the first publish to the moment the last reading is read back from the readings
topic, so it compares directly with the relay baseline, where a plain subscriber stands in for
the gateway.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.baselines import publish_readings
from simulators.publisher import Publisher
from telehealth.settings import Settings


async def _partitions(bootstrap: str, topic: str, timeout_s: float = 60) -> list[Any]:
    """The topic's partitions, once the services have created it."""
    from aiokafka import TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            [found] = await admin.describe_topics([topic])
            if found["error_code"] == 0 and found["partitions"]:
                return [TopicPartition(topic, p["partition"]) for p in found["partitions"]]
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
    raise RuntimeError(f"topic {topic} was not created within {timeout_s:.0f} s")


class TopicCount:
    """Counts records arriving on some topics, by reading them (no consumer group).

    Not by end offsets: Tansu answers ListOffsets "latest" with the last batch's base offset
    plus one, so end offsets undercount by all but one record of each partition's last batch
    (measured: 1,000 records in two batches gave end offsets 1 and 1)."""

    def __init__(self, bootstrap: str) -> None:
        from aiokafka import AIOKafkaConsumer

        self._bootstrap = bootstrap
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)

    async def __aenter__(self) -> TopicCount:
        await self._consumer.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._consumer.stop()

    async def follow(self, *topics: str) -> None:
        """Start counting on `topics` from now on (what they already hold is read and skipped)."""
        partitions = [tp for t in topics for tp in await _partitions(self._bootstrap, t)]
        self._consumer.assign(partitions)
        await self._consumer.seek_to_beginning(*partitions)
        while await self.arrived(0.3):
            pass

    async def arrived(self, wait_s: float) -> int:
        """Records arrived since the last call (waits up to `wait_s` for the first)."""
        batch = await self._consumer.getmany(timeout_ms=int(wait_s * 1000), max_records=10_000)
        return sum(len(records) for records in batch.values())


async def until_subscribed(settings: Settings, device: str, timeout_s: float = 60) -> None:
    """Until a status message reaches Kafka: the gateway has subscribed. Readings published
    before that would be dropped by the broker (no subscriber yet), not lost by the gateway."""
    assert settings.kafka_bootstrap
    publisher = Publisher(settings.mqtt_relay_url(), client_id="bench-gateway-probe")
    await publisher.connect()
    try:
        async with TopicCount(settings.kafka_bootstrap) as status:
            await status.follow(settings.status_topic)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                publisher.publish_status(device, "online")
                if await status.arrived(2.0):
                    return
        raise RuntimeError(f"the gateway did not forward a status message within {timeout_s:.0f} s")
    finally:
        await publisher.close()


async def gateway_alone(
    settings: Settings,
    devices: list[str],
    readings: int,
    per_message: int,
    publishers: int,
    load: tuple[str, str | None],
) -> tuple[float, int]:
    """(readings/s, readings that reached Kafka); call `until_subscribed` first. The counting
    consumer runs in this process, beside the publisher processes."""
    assert settings.kafka_bootstrap
    async with TopicCount(settings.kafka_bootstrap) as arrivals:
        await arrivals.follow(settings.readings_topic)
        publishing = asyncio.create_task(
            asyncio.to_thread(publish_readings, load, devices, readings, per_message, publishers)
        )
        forwarded, idle = 0, 0.0
        while forwarded < readings and idle < 30:  # 30 s without a record after publishing: give up
            got = await arrivals.arrived(1.0)
            forwarded += got
            idle = 0.0 if got or not publishing.done() else idle + 1.0
        finished = time.perf_counter()
        started, _, _ = await publishing
    return forwarded / (finished - started), forwarded
