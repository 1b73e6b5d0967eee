"""The alert outbox as the processor's collaborator: alerts are written in a batch's
transaction and sent to Kafka afterwards (`store.publish_pending`), one read at a time.

The pipeline is built with it and publishes after an urgent part commits; the service
publishes after each batch that changed an alert and on a timer."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

import psycopg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from psycopg_pool import AsyncConnectionPool

from processor import metrics
from processor.alerts import store as alert_store

log = logging.getLogger(__name__)


class Outbox(Protocol):
    async def publish(self) -> None:
        """Send what the outbox holds; never raises for an unreachable database or broker."""


class AlertOutbox:
    def __init__(self, pool: AsyncConnectionPool, producer: AIOKafkaProducer, topic: str) -> None:
        self._pool = pool
        self._producer = producer
        self._topic = topic
        self._publishing = asyncio.Lock()  # batches and express commits both publish

    async def publish(self) -> None:
        async with self._publishing:
            try:
                await alert_store.publish_pending(self._pool, self._producer, self._topic, _published)
            except (psycopg.OperationalError, KafkaError) as exc:
                log.warning("alert outbox not published yet: %s", exc)


def _published(rows: list[dict[str, Any]]) -> None:
    metrics.observe_published(rows)
    for row in rows:
        log.info(
            "alert %s %s %s published",
            row["rule"],
            row["severity"],
            row["status"],
            extra={
                "alert_id": row["id"],
                "patient_id": row["patient_id"],
                "device_id": row["device_id"],
                "seq": row["seq"],
            },
        )
