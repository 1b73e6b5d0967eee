"""Faults of the servers under the stream: every reading a device got a PUBACK for is stored
exactly once after recovery, and storing resumes by itself."""

from __future__ import annotations

import asyncio
import signal
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest

from launcher.embedded import EmbeddedKafka
from launcher.mosquitto import EmbeddedMqtt
from launcher.stack import Services, start_broker
from simulators.publisher import Publisher
from telehealth.settings import Settings
from telehealth.topics import readings_topic
from tests.conftest import eventually, metric, metrics_url
from tests.factories import make_device, make_patient
from tests.nightscout_support import now_ms, provision_uploader, secret, xdrip_day
from tests.stream import settled, stored

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
            await asyncio.sleep(0.02)  # pacing the stream, not a wait
    assert await publisher.drain(60), "the broker PUBACKed every reading"


def mosquitto(broker: EmbeddedMqtt | str) -> EmbeddedMqtt:
    if not isinstance(broker, EmbeddedMqtt) or broker.kind != "mosquitto":
        pytest.skip("restarts the embedded Mosquitto")
    return broker


@pytest.mark.parametrize("how", ["restart", "kill -9 after a save"])
async def test_mosquitto_restart_keeps_what_it_queued_for_the_absent_gateway(
    how: str,
    services: Services,
    settings: Settings,
    db: psycopg.AsyncConnection[Any],
    mqtt_broker: EmbeddedMqtt | str,
) -> None:
    """The gateway's session is persistent and the broker saves it: readings PUBACKed while
    the gateway was away survive a restart of the broker (2,406 were lost before), and a kill
    -9 once the broker has saved them (every 2 s)."""
    broker = mosquitto(mqtt_broker)
    assert settings.database_url
    patient = await make_patient(db, "team-mosquitto")
    device = await make_device(db, patient, "oximeter")
    total = 2000
    publisher = Publisher(settings.mqtt_relay_url(), client_id=f"mosquitto-{how.split()[0]}")
    await publisher.connect()
    try:
        await publish(publisher, device.device_id, range(1, 101))
        await eventually(lambda: _all(db, device.device_id, 100))
        services.stop("gateway")  # a clean stop: its session and subscriptions stay
        await publish(publisher, device.device_id, range(101, total + 1))
    finally:
        await publisher.close()
    if how == "restart":
        broker.stop()
    else:
        acked_at = time.time()
        await eventually(lambda: _saved_after(broker, acked_at + 0.5))
        assert broker.proc is not None
        broker.proc.send_signal(signal.SIGKILL)
        broker.proc.wait()
        broker.proc = None
    await asyncio.to_thread(start_broker, broker, settings.database_url)
    services.start("gateway", "gateway")
    await exactly_once(db, device.device_id, total)


async def _letters(db: psycopg.AsyncConnection[Any], device_id: str) -> dict[str, int]:
    cur = await db.execute(
        "SELECT reason, count(*) AS n FROM dead_letters WHERE device_id = %s GROUP BY reason", (device_id,)
    )
    return {r["reason"]: r["n"] for r in await cur.fetchall()}


async def test_kafka_kill_9_mid_stream_loses_nothing_acked_and_blames_no_reading(
    services: Services,
    settings: Settings,
    db: psycopg.AsyncConnection[Any],
    kafka_broker: EmbeddedKafka | None,
) -> None:
    """The embedded Kafka keeps memory only: its crash loses what it had accepted. The
    gateway's spool replays it to the new broker, whose topics are put back; readings that
    arrived meanwhile were held (MQTT acks withheld), never dead-lettered as `kafka_rejected`;
    dead letters made before and after the crash (offsets restart at 0) are all recorded."""
    if kafka_broker is None or kafka_broker.proc is None:
        pytest.skip("kills the embedded Kafka broker")
    patient = await make_patient(db, "team-kafka-crash")
    device = await make_device(db, patient, "oximeter")
    gateway = metrics_url(services, "gateway")
    letters_before = metric(gateway, "telehealth_gateway_dead_letters_total", reason="unparseable")
    total, bad = 3000, 0
    publisher = Publisher(settings.mqtt_relay_url(), client_id="kafka-crash")
    await publisher.connect()
    try:
        await publish(publisher, device.device_id, range(1, 1001))
        for _ in range(3):
            publisher.publish_raw(readings_topic(device.device_id), b"not json")
            bad += 1
        await eventually(lambda: _all(db, device.device_id, 1))
        # Records Kafka accepted and the processor has not read yet: what a crash loses.
        processor = services.procs["processor"]
        processor.send_signal(signal.SIGSTOP)
        try:
            await publish(publisher, device.device_id, range(1001, 2001))
            await eventually(lambda: _nothing_held(gateway))  # every one acked, so in Kafka
            kafka_broker.proc.send_signal(signal.SIGKILL)
            kafka_broker.proc.wait()
        finally:
            processor.send_signal(signal.SIGCONT)
        await publish(publisher, device.device_id, range(2001, 2501))  # the broker PUBACKs; the gateway holds
        await asyncio.to_thread(kafka_broker.start)  # same port, empty, a new cluster id
        await publish(publisher, device.device_id, range(2501, total + 1))
        for _ in range(3):
            publisher.publish_raw(readings_topic(device.device_id), b"not json")
            bad += 1
        assert await publisher.drain(30)
    finally:
        await publisher.close()
    await exactly_once(db, device.device_id, total)
    assert await eventually(lambda: _letters_are(db, device.device_id, {"unparseable": bad}))
    letters_after = metric(gateway, "telehealth_gateway_dead_letters_total", reason="unparseable")
    assert letters_after - letters_before == bad, "the table and the gateway's count agree"
    assert not services.dead()


async def test_a_nightscout_upload_is_answered_only_once_stored_through_a_kafka_crash(
    services: Services,
    settings: Settings,
    db: psycopg.AsyncConnection[Any],
    http: httpx.AsyncClient,
    kafka_broker: EmbeddedKafka | None,
) -> None:
    """The HTTP intake has no spool: Kafka's acknowledgement of an upload is lost with the
    embedded broker, so the upload is answered only once the store holds it. An upload in
    flight through a Kafka crash is answered 503, never 200, and the app's repeat is stored
    once."""
    if kafka_broker is None or kafka_broker.proc is None:
        pytest.skip("kills the embedded Kafka broker")
    patient = await make_patient(db, "team-ns-crash")
    creds = await provision_uploader(http, db, patient)
    entries = xdrip_day(now_ms() - 60_000, count=12)
    processor = services.procs["processor"]
    async with httpx.AsyncClient(base_url=str(http.base_url), timeout=60) as client:
        processor.send_signal(signal.SIGSTOP)  # Kafka takes the upload; the store cannot yet
        try:
            upload = asyncio.create_task(client.post("/api/v1/entries", json=entries, headers=secret(creds)))
            await asyncio.wait({upload}, timeout=3)  # time for Kafka to acknowledge it
            kafka_broker.proc.send_signal(signal.SIGKILL)
            kafka_broker.proc.wait()
        finally:
            processor.send_signal(signal.SIGCONT)
        await asyncio.to_thread(kafka_broker.start)
        first = await upload
        answers = [first.status_code]
        while answers[-1] != 200 and len(answers) < 6:  # the app uploads again, as it would
            answers.append(
                (await client.post("/api/v1/entries", json=entries, headers=secret(creds))).status_code
            )
    assert set(answers[:-1]) <= {503} and answers[-1] == 200, answers
    device = creds["device_id"]
    assert await stored(db, device) == len(entries), "answered 200 means stored"
    await settled(db)
    cur = await db.execute("SELECT count(*) AS n FROM readings WHERE device_id = %s", (device,))
    assert await cur.fetchone() == {"n": len(entries)}
    assert not services.dead()


async def _letters_are(db: psycopg.AsyncConnection[Any], device_id: str, want: dict[str, int]) -> bool:
    return await _letters(db, device_id) == want


async def _nothing_held(gateway: str) -> bool:
    return await asyncio.to_thread(metric, gateway, "telehealth_gateway_in_flight") == 0


async def _saved_after(broker: EmbeddedMqtt, moment: float) -> bool:
    saved = broker.dir / "mosquitto.db"
    return saved.exists() and saved.stat().st_mtime > moment


async def test_the_spool_lets_go_of_readings_letters_and_statuses_once_stored(
    services: Services, settings: Settings, db: psycopg.AsyncConnection[Any]
) -> None:
    """Each kind of record leaves the gateway's spool when the store holds it (the spool would
    otherwise fill and hold every ack back): a reading by (device, seq), a dead letter by its
    id, a status by the device's state time."""
    gateway = metrics_url(services, "gateway")
    patient = await make_patient(db, "team-spool")
    device = await make_device(db, patient, "oximeter")
    publisher = Publisher(settings.mqtt_relay_url(), client_id="spool-kinds")
    await publisher.connect()
    try:
        await publish(publisher, device.device_id, range(1, 51))
        publisher.publish_raw(readings_topic(device.device_id), b"not json")
        publisher.publish_status(device.device_id, "online", battery_pct=80)
        assert await publisher.drain(30)
    finally:
        await publisher.close()
    await exactly_once(db, device.device_id, 50)

    async def state_stored() -> bool:
        cur = await db.execute("SELECT battery_pct FROM devices WHERE id = %s", (device.device_id,))
        return await cur.fetchone() == {"battery_pct": 80}

    await eventually(state_stored)
    assert await eventually(lambda: _letters_are(db, device.device_id, {"unparseable": 1}))
    await eventually(lambda: _spool_empty(gateway))


async def _spool_empty(gateway: str) -> bool:
    text = (await asyncio.to_thread(httpx.get, gateway, timeout=5)).text
    return "\ntelehealth_gateway_spooled 0.0\n" in text
