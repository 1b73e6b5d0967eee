"""The API's Kafka producer, for uploads that arrive over HTTP (Nightscout entries).

Started with the app only when Kafka is configured, and in the background: the API serves
every other route without Kafka, and uploads answer 503 (retry later) until the producer is
connected. Records are sent exactly as the gateway sends them, and an upload is answered only
once Kafka acknowledged every one of its records (acks=all), the gateway's promise over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer

from telehealth.kafka import ensure_topics, make_producer
from telehealth.settings import Settings

log = logging.getLogger(__name__)

#: an upload waits at most this long for Kafka before it is answered 503
SEND_TIMEOUT_S = 15.0


class IntakeUnavailable(Exception):
    """Kafka is not configured, not reached yet, or did not take the records in time."""


class Intake:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def configured(self) -> bool:
        return bool(self._settings.kafka_bootstrap)

    def start(self) -> None:
        if self.configured:
            self._task = asyncio.create_task(self._connect(), name="kafka-intake")

    async def _connect(self) -> None:
        delay = 0.5
        while True:
            producer = make_producer(self._settings, linger_ms=2)
            try:
                await ensure_topics(self._settings, attempts=1)
                await producer.start()
            except Exception as exc:  # broker away: keep serving other routes, retry
                log.warning("Kafka not reachable for uploads (%s); retrying in %.1f s", exc, delay)
                with contextlib.suppress(Exception):
                    await producer.stop()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            self._producer = producer
            log.info("Kafka producer for uploads connected")
            return

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._producer is not None:
            await self._producer.stop()

    async def send_all(self, records: Sequence[tuple[str, bytes, bytes]]) -> None:
        """Send (topic, key, value) records; return once Kafka acknowledged all of them."""
        if not self.configured:
            raise IntakeUnavailable("uploads need Kafka: TELEHEALTH_KAFKA_BOOTSTRAP is not set")
        producer = self._producer
        if producer is None:
            raise IntakeUnavailable("Kafka is not reachable yet")
        try:
            async with asyncio.timeout(SEND_TIMEOUT_S):
                futures = [await producer.send(topic, value, key=key) for topic, key, value in records]
                await asyncio.gather(*futures)
        except Exception as exc:
            # Nothing is acknowledged to the client: it uploads again, and receipts make the
            # repeat harmless for whatever did reach Kafka.
            raise IntakeUnavailable(f"Kafka did not accept the upload: {type(exc).__name__}: {exc}") from exc
