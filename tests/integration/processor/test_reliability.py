"""Kill -9 a service mid-stream: after recovery every accepted reading is stored exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest

from launcher.embedded import EmbeddedPostgres
from launcher.mosquitto import EmbeddedMqtt
from launcher.stack import Services, wait_http_ok
from simulators.publisher import Publisher
from telehealth.settings import Settings
from tests.conftest import eventually, metric, metrics_url
from tests.factories import make_device, make_patient
from tests.stream import above, settled, stored

TOTAL = 4000


# Not strict: a kill that happens to land with nothing in flight loses nothing, even on amqtt.
AMQTT_DROPS_INFLIGHT = pytest.mark.xfail(
    strict=False,
    reason="amqtt 0.12 discards unacknowledged in-flight QoS 1 messages when the subscriber "
    "disconnects (amqtt/mqtt/protocol/handler.py, inflight_out.pop in finally); "
    "the guarantee holds with mosquitto",
)


@pytest.mark.parametrize("victim", ["processor", "gateway", "api"])
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
    publisher = Publisher(settings.mqtt_relay_url(), client_id=f"kill-{victim}")
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
                await asyncio.sleep(0.05)  # pacing the stream, not a wait
            if seq == TOTAL // 2:
                await eventually(lambda: above(db, device.device_id, 0), timeout=30, interval=0.05)
                services.procs[victim].send_signal(signal.SIGKILL)
                services.procs[victim].wait()
                killed_at = await stored(db, device.device_id)
        assert await publisher.drain(60)
    finally:
        await publisher.close()
    assert killed_at is not None and 0 < killed_at < TOTAL, "the kill must land mid-stream"
    services.start(victim, victim)
    if victim == "api":
        await asyncio.to_thread(wait_http_ok, f"http://127.0.0.1:{settings.api_port}/readyz")
    await eventually(lambda: above(db, device.device_id, TOTAL - 1), timeout=90)
    await settled(db)  # anything replayed after recovery would have been stored by now
    assert await stored(db, device.device_id) == TOTAL
    cur = await db.execute(
        "SELECT count(*) AS rows, count(DISTINCT seq) AS seqs FROM readings WHERE device_id = %s",
        (device.device_id,),
    )
    assert await cur.fetchone() == {"rows": TOTAL, "seqs": TOTAL}


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
    publisher = Publisher(settings.mqtt_relay_url(), client_id="outage-device")
    await publisher.connect()
    half = TOTAL // 2
    obs = [{"code": "pulse", "value": 64, "unit": "/min"}]
    for seq in range(1, half + 1):
        publisher.publish_reading(device.device_id, seq, obs, measured_at=datetime.now(UTC))
    async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
        await eventually(lambda: above(conn, device.device_id, 0))  # the stream is flowing
    processor = metrics_url(services, "processor")
    retries = metric(processor, "telehealth_processor_batch_retries_total")
    postgres.stop()
    with pytest.raises(psycopg.OperationalError):
        await psycopg.AsyncConnection.connect(url, connect_timeout=2)
    try:
        for seq in range(half + 1, TOTAL + 1):
            publisher.publish_reading(device.device_id, seq, obs, measured_at=datetime.now(UTC))
        assert await publisher.drain(30)

        async def held_back() -> bool:
            """The processor met the outage: it holds a batch it cannot store (waiting for a
            connection, up to the pool's 30 s) or has retried one."""
            held = await asyncio.to_thread(metric, processor, "telehealth_processor_in_flight")
            tried = await asyncio.to_thread(metric, processor, "telehealth_processor_batch_retries_total")
            return held > 0 or tried > retries

        await eventually(held_back)
        assert not services.dead(), "services must ride out a database outage"
    finally:
        await publisher.close()
        assert postgres.start() == url

    async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
        await eventually(lambda: above(conn, device.device_id, TOTAL - 1), timeout=90)
        await settled(conn)
        cur = await conn.execute(
            "SELECT count(*) AS rows, count(DISTINCT seq) AS seqs FROM readings WHERE device_id = %s",
            (device.device_id,),
        )
        assert await cur.fetchone() == {"rows": TOTAL, "seqs": TOTAL}
    assert not services.dead()


async def _spo2(publisher: Publisher, device_id: str, seq: int, value: float) -> None:
    publisher.publish_reading(
        device_id, seq, [{"code": "spo2", "value": value, "unit": "%"}], measured_at=datetime.now(UTC)
    )
    assert await publisher.drain(10)


async def test_processor_restart_mid_episode_continues_the_same_alert(
    services: Services, settings: Settings, db: psycopg.AsyncConnection[Any]
) -> None:
    patient = await make_patient(db, "team-restart")
    device = await make_device(db, patient, "oximeter")
    assert settings.mqtt_url
    publisher = Publisher(settings.mqtt_relay_url(), client_id="restart-episode")
    await publisher.connect()

    async def spo2_alerts() -> list[dict[str, Any]]:
        cur = await db.execute(
            "SELECT id, severity, status, resolution FROM alerts WHERE patient_id = %s AND rule = 'spo2_low'",
            (patient,),
        )
        return await cur.fetchall()

    try:
        await _spo2(publisher, device.device_id, 1, 92)
        await _spo2(publisher, device.device_id, 2, 92)
        [opened] = await eventually(spo2_alerts)
        services.procs["processor"].send_signal(signal.SIGKILL)
        services.procs["processor"].wait()
        services.start("processor", "processor")
        await _spo2(publisher, device.device_id, 3, 92)  # still breaching: no second alert
        await _spo2(publisher, device.device_id, 4, 90)  # urgent: the same alert escalates
        await eventually(lambda: _has(spo2_alerts, severity="urgent"))
        await _spo2(publisher, device.device_id, 5, 97)
        [final] = await eventually(lambda: _has(spo2_alerts, status="resolved"))
    finally:
        await publisher.close()
    assert final["id"] == opened["id"] and final["resolution"] == "auto"


async def _has(query: Any, **want: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = await query()
    return rows if rows and all(all(r[k] == v for k, v in want.items()) for r in rows) else []


async def test_two_processors_in_one_group_never_open_the_same_alert_twice(
    services: Services, settings: Settings, db: psycopg.AsyncConnection[Any]
) -> None:
    from aiokafka.partitioner import DefaultPartitioner

    patient = await make_patient(db, "team-two")
    # Devices on every readings partition (as the producer places them, by key), so that
    # whichever partitions each processor holds, both get some of this patient's readings.
    place = DefaultPartitioner()
    partitions = list(range(settings.kafka_partitions))
    devices, covered = [], set()
    while covered != set(partitions):
        device = await make_device(db, patient, "oximeter")
        devices.append(device)
        covered.add(place(device.device_id.encode(), partitions, partitions))
    urls = [metrics_url(services, "processor"), metrics_url(services, "processor-2")]
    readings = settings.readings_topic

    def held() -> list[float]:
        return [metric(u, "telehealth_processor_assigned_partitions", topic=readings) for u in urls]

    def stored_by_each() -> list[float]:
        return [metric(u, "telehealth_processor_readings_stored_total") for u in urls]

    services.start("processor-2", "processor")

    async def shared() -> list[float] | None:  # the group rebalanced across both
        with contextlib.suppress(httpx.HTTPError):  # processor-2 not listening yet
            split = await asyncio.to_thread(held)
            if sum(split) == len(partitions) and all(n >= 1 for n in split):
                return split
        return None

    await eventually(shared)
    before = await asyncio.to_thread(stored_by_each)
    assert settings.mqtt_url
    publisher = Publisher(settings.mqtt_relay_url(), client_id="two-processors")
    await publisher.connect()
    try:
        for round_ in range(1, 4):
            for d in devices:
                publisher.publish_reading(
                    d.device_id,
                    round_,
                    [{"code": "spo2", "value": 88, "unit": "%"}],
                    measured_at=datetime.now(UTC),
                )
        assert await publisher.drain(10)

        async def all_stored() -> bool:
            cur = await db.execute(
                "SELECT count(*) AS n FROM reading_receipts WHERE device_id = ANY(%s)",
                ([d.device_id for d in devices],),
            )
            row = await cur.fetchone()
            return row is not None and row["n"] == 3 * len(devices)

        await eventually(all_stored)
        await settled(db)
        after = await asyncio.to_thread(stored_by_each)
        assert all(a > b for a, b in zip(after, before, strict=True)), (before, after)
        assert all(n >= 1 for n in await asyncio.to_thread(held)), "both still hold partitions"
        cur = await db.execute(
            "SELECT count(*) AS n FROM alerts WHERE patient_id = %s AND rule = 'spo2_low'", (patient,)
        )
        assert await cur.fetchone() == {"n": 1}
        assert not services.dead()
    finally:
        await publisher.close()
        services.stop("processor-2")


async def test_a_stopped_processor_holds_nothing_back_once_it_runs_again(
    services: Services, settings: Settings, db: psycopg.AsyncConnection[Any]
) -> None:
    """SIGSTOP of the processor mid-stream (its group session expires meanwhile), then SIGCONT:
    every PUBACKed reading is stored exactly once."""
    patient = await make_patient(db, "team-sigstop")
    device = await make_device(db, patient, "oximeter")
    publisher = Publisher(settings.mqtt_relay_url(), client_id="sigstop")
    await publisher.connect()
    processor = services.procs["processor"]
    obs = [{"code": "pulse", "value": 64, "unit": "/min"}]
    try:
        for seq in range(1, TOTAL + 1):
            publisher.publish_reading(device.device_id, seq, obs, measured_at=datetime.now(UTC))
            if seq % 200 == 0:
                await asyncio.sleep(0.05)  # pacing the stream, not a wait
            if seq == TOTAL // 4:
                await eventually(lambda: above(db, device.device_id, 0), timeout=30, interval=0.05)
                processor.send_signal(signal.SIGSTOP)
        assert await publisher.drain(60)
        stopped_at = await stored(db, device.device_id)
        await asyncio.sleep(3)  # the stop outlasts the group session (1 s embedded)
        assert await stored(db, device.device_id) == stopped_at, "nothing stored while stopped"
    finally:
        processor.send_signal(signal.SIGCONT)
        await publisher.close()
    assert stopped_at < TOTAL, "the stop must land mid-stream"
    await eventually(lambda: above(db, device.device_id, TOTAL - 1), timeout=90)
    await settled(db)
    cur = await db.execute(
        "SELECT count(*) AS rows, count(DISTINCT seq) AS seqs FROM readings WHERE device_id = %s",
        (device.device_id,),
    )
    assert await cur.fetchone() == {"rows": TOTAL, "seqs": TOTAL}
    assert not services.dead()
