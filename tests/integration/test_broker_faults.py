"""Faults of the servers under the stream: every reading a device got a PUBACK for is stored
exactly once after recovery, and storing resumes by itself."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from launcher.embedded import EmbeddedMqtt
from launcher.stack import Services, start_broker
from simulators.publisher import Publisher
from telehealth.settings import Settings
from tests.conftest import eventually
from tests.factories import make_device, make_patient
from tests.integration.test_reliability import settled, stored

OBS = [{"code": "pulse", "value": 64, "unit": "/min"}]


async def exactly_once(db: psycopg.AsyncConnection[Any], device_id: str, total: int) -> None:
    """Every one of `total` PUBACKed readings stored, none twice."""
    await eventually(lambda: _all(db, device_id, total), timeout=90)
    await settled(db)  # anything replayed after recovery would have been stored by now
    cur = await db.execute(
        "SELECT count(*) AS rows, count(DISTINCT seq) AS seqs, min(seq) AS lo, max(seq) AS hi"
        " FROM readings WHERE device_id = %s",
        (device_id,),
    )
    assert await cur.fetchone() == {"rows": total, "seqs": total, "lo": 1, "hi": total}


async def _all(db: psycopg.AsyncConnection[Any], device_id: str, total: int) -> bool:
    return await stored(db, device_id) >= total


async def publish(publisher: Publisher, device_id: str, seqs: range) -> None:
    for seq in seqs:
        publisher.publish_reading(device_id, seq, OBS, measured_at=datetime.now(UTC))
        if seq % 200 == 0:
            await asyncio.sleep(0.02)
    assert await publisher.drain(60), "the broker PUBACKed every reading"


def mosquitto(broker: EmbeddedMqtt | str) -> EmbeddedMqtt:
    if not isinstance(broker, EmbeddedMqtt) or broker.kind != "mosquitto":
        pytest.skip("restarts the embedded Mosquitto")
    return broker


async def test_mosquitto_restart_keeps_what_it_queued_for_the_absent_gateway(
    services: Services, settings: Settings, db: psycopg.AsyncConnection[Any], mqtt_broker: EmbeddedMqtt | str
) -> None:
    """The gateway's session is persistent and the broker saves it: readings PUBACKed while
    the gateway was away survive a restart of the broker (2,406 were lost before)."""
    broker = mosquitto(mqtt_broker)
    assert settings.database_url
    patient = await make_patient(db, "team-mosquitto")
    device = await make_device(db, patient, "oximeter")
    total = 2000
    publisher = Publisher(settings.mqtt_relay_url(), client_id="mosquitto-restart")
    await publisher.connect()
    try:
        await publish(publisher, device.device_id, range(1, 101))
        await eventually(lambda: _all(db, device.device_id, 100))
        services.stop("gateway")  # a clean stop: its session and subscriptions stay
        await publish(publisher, device.device_id, range(101, total + 1))
    finally:
        await publisher.close()
    broker.stop()
    await asyncio.to_thread(start_broker, broker, settings.database_url)
    services.start("gateway", "gateway")
    await exactly_once(db, device.device_id, total)
