"""The gateway's resend rounds while Kafka is away: held records are resent, a round stops at
the first send refused before it is queued, and a broker fault never becomes a dead letter.

The producer here stands in for aiokafka's (a third-party client): `send` either queues a
record (a future answered later) or raises at once, as aiokafka does when it has no metadata
for the topic within its request timeout."""

from __future__ import annotations

import asyncio
from typing import Any

import paho.mqtt.client as mqtt
from aiokafka.errors import KafkaTimeoutError, UnknownError

from gateway.records import Outgoing, Pending
from gateway.service import Gateway
from gateway.spool import READING, Mark
from telehealth.settings import Settings
from telehealth.storage.devices import CachedRegistry


class Producer:
    """Refuses every send up front while `down`; afterwards answers each one with success."""

    def __init__(self) -> None:
        self.down = True
        self.attempts = 0

    async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[Any]:
        self.attempts += 1
        if self.down:
            raise KafkaTimeoutError("no metadata for the topic within the request timeout")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(("stored", topic))
        return future


def _settings() -> Settings:
    return Settings(
        mqtt_url="mqtt://127.0.0.1:1",
        mqtt_insecure=True,
        kafka_bootstrap="127.0.0.1:1",  # nothing listens: the topic check fails fast, as when Kafka is away
        database_url="postgresql://127.0.0.1:1/none",
        _env_file=None,  # type: ignore[call-arg]
    )


def _held(settings: Settings, n: int) -> list[Pending]:
    """`n` messages whose first sends Kafka answered with an error (a broker just restarted)."""
    group = []
    loop = asyncio.get_running_loop()
    for seq in range(n):
        message = mqtt.MQTTMessage(mid=seq + 1, topic=b"devices/d1/readings")
        record = Outgoing(settings.readings_topic, b"d1", b"{}", mark=Mark(READING, "d1", seq))
        failed: asyncio.Future[Any] = loop.create_future()
        failed.set_exception(UnknownError())
        group.append(Pending(message, [record], [failed]))
    return group


async def test_a_round_stops_at_the_first_refused_send_and_resumes_when_kafka_is_back() -> None:
    settings = _settings()
    producer = Producer()
    gateway = Gateway(settings, CachedRegistry(settings.database_url or ""), producer, None)  # type: ignore[arg-type]
    group = _held(settings, 100)
    accepted = asyncio.create_task(gateway._until_accepted(group))
    await asyncio.sleep(1.0)  # a few rounds of backoff while Kafka is away
    assert not accepted.done(), "the acks are held while Kafka refuses"
    rounds_while_down = producer.attempts
    # One attempt per round, not one per held record (100): each would wait for the broker.
    assert 1 <= rounds_while_down <= 6
    producer.down = False
    await asyncio.wait_for(accepted, 10)
    assert producer.attempts == rounds_while_down + 100, "every held record sent once more"
    for item in group:
        assert item.records[0].topic == settings.readings_topic, "a broker fault is not a dead letter"
        assert item.sends[0].result() == ("stored", settings.readings_topic)
