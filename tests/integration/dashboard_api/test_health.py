"""Honest readiness (a stalled pipeline is not ready) and a quick resume after kill -9."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from datetime import datetime
from typing import Any

import httpx
import psycopg
import pytest

from launcher.embedded import EmbeddedKafka
from launcher.stack import Services
from simulators.publisher import Publisher
from telehealth.settings import Settings
from tests.conftest import eventually
from tests.factories import make_device, make_patient
from tests.stream import above, stored

#: storing must resume within this after the processor is killed and started again
RESUME_WITHIN_S = 8.0

SPO2 = [{"code": "spo2", "value": 97, "unit": "%"}]


async def readiness(http: httpx.AsyncClient) -> tuple[int, dict[str, Any]]:
    response = await http.get("/readyz")
    return response.status_code, response.json()["checks"]


async def test_processor_resumes_storing_within_seconds_after_kill_9(
    services: Services, settings: Settings, db: psycopg.AsyncConnection[Any]
) -> None:
    patient = await make_patient(db, "team-resume")
    device = await make_device(db, patient, "oximeter")
    assert settings.mqtt_url
    publisher = Publisher(settings.mqtt_relay_url(), client_id="resume-stream")
    await publisher.connect()
    stop = asyncio.Event()

    async def stream() -> None:
        seq = 0
        while not stop.is_set():
            seq += 1
            publisher.publish_reading(device.device_id, seq, SPO2)
            await asyncio.sleep(0.02)  # a reading every 20 ms, not a wait

    streaming = asyncio.create_task(stream())
    try:
        await eventually(lambda: above(db, device.device_id, 20))
        services.procs["processor"].send_signal(signal.SIGKILL)
        services.procs["processor"].wait()
        cur = await db.execute("SELECT now() AS t")
        killed_at: datetime = (await cur.fetchone())["t"]  # type: ignore[index]
        services.start("processor", "processor")

        async def first_after() -> datetime | None:
            cur = await db.execute(
                "SELECT min(stored_at) AS t FROM reading_receipts WHERE device_id = %s AND stored_at > %s",
                (device.device_id, killed_at),
            )
            row = await cur.fetchone()
            return None if row is None else row["t"]

        resumed_at = await eventually(first_after, timeout=60, interval=0.05)
    finally:
        stop.set()
        await streaming
        await publisher.close()
    gap = (resumed_at - killed_at).total_seconds()
    print(f"\nstoring resumed {gap:.2f}s after kill -9 and restart of the processor")
    assert gap < RESUME_WITHIN_S


async def test_readyz_reports_a_silent_processor_then_recovers(
    services: Services, http: httpx.AsyncClient
) -> None:
    assert (await readiness(http))[0] == 200
    processor = services.procs["processor"]
    processor.send_signal(signal.SIGSTOP)
    try:

        async def silent() -> dict[str, Any] | None:
            status, checks = await readiness(http)
            return checks if status == 503 and "no heartbeat" in checks.get("processor", "") else None

        checks = await eventually(silent, timeout=30)
        assert checks["gateway"] == "ok"
    finally:
        processor.send_signal(signal.SIGCONT)
    await eventually(lambda: _ready(http), timeout=30)


async def _ready(http: httpx.AsyncClient) -> bool:
    return (await readiness(http))[0] == 200


async def test_readyz_turns_503_while_the_gateway_holds_acks_then_recovers(
    services: Services,
    settings: Settings,
    db: psycopg.AsyncConnection[Any],
    http: httpx.AsyncClient,
    kafka_broker: EmbeddedKafka | None,
) -> None:
    """Kafka frozen (SIGSTOP): the gateway holds its acks, /readyz says so; thawed, all is stored."""
    if kafka_broker is None or kafka_broker.proc is None:
        pytest.skip("freezes the embedded Kafka broker; not done to an external one")
    patient = await make_patient(db, "team-stall")
    device = await make_device(db, patient, "oximeter")
    assert settings.mqtt_url
    publisher = Publisher(settings.mqtt_relay_url(), client_id="stall-device")
    await publisher.connect()
    await eventually(lambda: _ready(http), timeout=30)
    kafka_broker.proc.send_signal(signal.SIGSTOP)
    try:
        for seq in range(1, 51):
            publisher.publish_reading(device.device_id, seq, SPO2)
        assert await publisher.drain(30)  # the broker has them; the gateway cannot ack them

        async def stalled() -> dict[str, Any] | None:
            status, checks = await readiness(http)
            return checks if status == 503 and checks.get("gateway", "").startswith("stalled") else None

        checks = await eventually(stalled, timeout=60, interval=0.5)
        assert "no progress" in checks["gateway"]
    finally:
        kafka_broker.proc.send_signal(signal.SIGCONT)
        with contextlib.suppress(Exception):
            await publisher.close()
    await eventually(lambda: _equals(stored(db, device.device_id), 50), timeout=90)
    await eventually(lambda: _ready(http), timeout=60)
    assert not services.dead()


async def _equals(query: Any, expected: int) -> bool:
    return bool(await query == expected)
