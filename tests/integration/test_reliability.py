"""Kill -9 a service mid-stream: after recovery every accepted reading is stored exactly once."""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from simulators.publisher import Publisher
from telehealth.embedded import EmbeddedMqtt, EmbeddedPostgres
from telehealth.settings import Settings
from telehealth.stack import Services
from tests.conftest import eventually
from tests.factories import make_device, make_patient

TOTAL = 4000


async def stored(db: psycopg.AsyncConnection[Any], device_id: str) -> int:
    cur = await db.execute("SELECT count(*) AS n FROM reading_receipts WHERE device_id = %s", (device_id,))
    row = await cur.fetchone()
    assert row is not None
    return int(row["n"])


# Not strict: a kill that happens to land with nothing in flight loses nothing, even on amqtt.
AMQTT_DROPS_INFLIGHT = pytest.mark.xfail(
    strict=False,
    reason="amqtt 0.12 discards unacknowledged in-flight QoS 1 messages when the subscriber "
    "disconnects (amqtt/mqtt/protocol/handler.py, inflight_out.pop in finally); "
    "the guarantee holds with mosquitto",
)


@pytest.mark.parametrize("victim", ["processor", "gateway"])
async def test_kill_9_mid_stream_loses_nothing_and_stores_nothing_twice(
    victim: str,
    services: Services,
    settings: Settings,
    db: psycopg.AsyncConnection[Any],
    mqtt_broker: EmbeddedMqtt | str,
    request: pytest.FixtureRequest,
) -> None:
    if victim == "gateway" and isinstance(mqtt_broker, EmbeddedMqtt) and mqtt_broker.kind == "amqtt":
        request.applymarker(AMQTT_DROPS_INFLIGHT)
    patient = await make_patient(db, "team-kill")
    device = await make_device(db, patient, "oximeter")
    assert settings.mqtt_url
    publisher = Publisher(settings.mqtt_url, client_id=f"kill-{victim}")
    await publisher.connect()
    killed_at: int | None = None
    try:
        for seq in range(1, TOTAL + 1):
            publisher.publish_reading(
                device.device_id,
                seq,
                [{"code": "spo2", "value": 97, "unit": "%"}],
                measured_at=datetime.now(UTC),
            )
            if seq % 200 == 0:
                await asyncio.sleep(0.05)
            if seq == TOTAL // 2:
                await eventually(lambda: _above(db, device.device_id, 0), timeout=30, interval=0.05)
                services.procs[victim].send_signal(signal.SIGKILL)
                services.procs[victim].wait()
                killed_at = await stored(db, device.device_id)
        assert await publisher.drain(60)
    finally:
        await publisher.close()
    assert killed_at is not None and 0 < killed_at < TOTAL, "the kill must land mid-stream"
    services.start(victim, victim)
    await eventually(lambda: _above(db, device.device_id, TOTAL - 1), timeout=90)
    await asyncio.sleep(1.0)  # anything replayed after recovery would show up now
    assert await stored(db, device.device_id) == TOTAL
    cur = await db.execute(
        "SELECT count(*) AS rows, count(DISTINCT seq) AS seqs FROM readings WHERE device_id = %s",
        (device.device_id,),
    )
    assert await cur.fetchone() == {"rows": TOTAL, "seqs": TOTAL}


async def _above(db: psycopg.AsyncConnection[Any], device_id: str, n: int) -> bool:
    return await stored(db, device_id) > n


async def test_database_outage_mid_stream_holds_back_then_stores_everything_once(
    services: Services, settings: Settings, postgres: EmbeddedPostgres | None
) -> None:
    if postgres is None:
        pytest.skip("stops and restarts the embedded PostgreSQL; not done to an external server")
    from psycopg.rows import dict_row

    url = postgres.url
    async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
        patient = await make_patient(conn, "team-outage")
        device = await make_device(conn, patient, "oximeter")
    assert settings.mqtt_url
    publisher = Publisher(settings.mqtt_url, client_id="outage-device")
    await publisher.connect()
    half = TOTAL // 2
    obs = [{"code": "pulse", "value": 64, "unit": "/min"}]
    for seq in range(1, half + 1):
        publisher.publish_reading(device.device_id, seq, obs, measured_at=datetime.now(UTC))
    await asyncio.sleep(0.3)
    postgres.stop()
    with pytest.raises(psycopg.OperationalError):
        await psycopg.AsyncConnection.connect(url, connect_timeout=2)
    try:
        for seq in range(half + 1, TOTAL + 1):
            publisher.publish_reading(device.device_id, seq, obs, measured_at=datetime.now(UTC))
        assert await publisher.drain(30)
        await asyncio.sleep(3)  # the services meet the outage and hold back
        assert not services.dead(), "services must ride out a database outage"
    finally:
        await publisher.close()
        assert postgres.start() == url

    async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
        await eventually(lambda: _above(conn, device.device_id, TOTAL - 1), timeout=90)
        await asyncio.sleep(1.0)
        cur = await conn.execute(
            "SELECT count(*) AS rows, count(DISTINCT seq) AS seqs FROM readings WHERE device_id = %s",
            (device.device_id,),
        )
        assert await cur.fetchone() == {"rows": TOTAL, "seqs": TOTAL}
    assert not services.dead()
