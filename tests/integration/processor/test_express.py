"""Urgent readings taken while a batch is in flight are stored and alerted on at once
(`Pipeline.express`, `processor.ahead`), never ahead of their own patient's earlier readings,
and never twice.

The first tests run the pipeline on records built by hand against the real database, so that
what is in flight and what is held is known; the last runs the real processor service, with a
batch held up in PostgreSQL by a row lock.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
from aiokafka import AIOKafkaProducer

from launcher.stack import Services
from processor import sink
from processor.decode import Batch, decode
from processor.pipeline import Pipeline
from telehealth.contracts import wire_time
from telehealth.settings import Settings
from telehealth.storage import open_pool
from telehealth.storage.devices import CachedRegistry
from tests.conftest import eventually
from tests.factories import make_device, make_patient
from tests.stream import count, forwarded, oximeter

TEAM = "team-express"


class Run:
    """One pipeline, as one processor would hold it, over a pool and a registry."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def __aenter__(self) -> Pipeline:
        assert self.settings.database_url
        self.pool = await open_pool(self.settings.database_url, max_size=2, configure=sink.prepare)
        self.registry = CachedRegistry(self.settings.database_url, self.settings.device_cache_ttl_s)
        self.pipeline = Pipeline(self.settings, self.pool, self.registry)
        return self.pipeline

    async def __aexit__(self, *_: object) -> None:
        await self.pipeline.consent.drain(self.pool)  # what the processor's consent step does next
        await self.registry.close()
        await self.pool.close()


async def stored(db: psycopg.AsyncConnection[Any], device: str) -> dict[int, list[str]]:
    cur = await db.execute(
        "SELECT seq, quality FROM readings WHERE device_id = %s AND code = 'spo2'", (device,)
    )
    return {r["seq"]: r["quality"] for r in await cur.fetchall()}


async def patients_with_oximeters(db: psycopg.AsyncConnection[Any], n: int) -> list[tuple[UUID, str]]:
    out = []
    for _ in range(n):
        patient = await make_patient(db, TEAM)
        out.append((patient, (await make_device(db, patient, "oximeter")).device_id))
    return out


async def test_an_urgent_patient_held_ahead_is_stored_and_alerted_once(
    db: psycopg.AsyncConnection[Any], settings: Settings
) -> None:
    (calm, calm_device), (urgent, device) = await patients_with_oximeters(db, 2)
    now = datetime.now(UTC)
    records = [
        forwarded(settings, 0, oximeter(calm_device, 1, 97, now)),
        forwarded(settings, 1, oximeter(device, 1, 95, now)),
        forwarded(settings, 2, oximeter(device, 2, 90, now + timedelta(seconds=1))),
    ]
    held = decode(records, settings)
    async with Run(settings) as pipeline:
        alerts = await pipeline.express(held, held.readings[2:], busy_devices=set())
        assert alerts == 1
        # the urgent patient's held readings, the calm one before the low included; not the others
        assert await stored(db, device) == {1: [], 2: []}
        assert await stored(db, calm_device) == {}
        # the next batch holds them all again: they are not stored, alerted on or decided twice,
        # and, stored ahead rather than redelivered, they count as stored (once), not duplicates
        report = await pipeline.process(records, held)
        assert (report.stored, report.duplicates, report.alerts) == (3, 0, 0)
        again = await pipeline.process(records, held)  # a true redelivery of the whole batch
        assert (again.stored, again.duplicates, again.alerts) == (0, 3, 0)
    assert await count(db, "SELECT count(*) AS n FROM alerts WHERE patient_id = %s", urgent) == 1
    assert await count(db, "SELECT count(*) AS n FROM reading_consent WHERE device_id = %s", device) == 4
    assert await count(db, "SELECT count(*) AS n FROM alerts WHERE patient_id = %s", calm) == 0


async def test_a_patient_with_a_device_in_the_batch_in_flight_waits_for_it(
    db: psycopg.AsyncConnection[Any], settings: Settings
) -> None:
    """Their readings must commit after that batch's, so nothing is stored ahead for them."""
    [(patient, device)] = await patients_with_oximeters(db, 1)
    other = (await make_device(db, patient, "oximeter")).device_id
    held = decode([forwarded(settings, 0, oximeter(device, 1, 85, datetime.now(UTC)))], settings)
    async with Run(settings) as pipeline:
        assert await pipeline.express(held, held.readings, busy_devices={other}) == 0
        assert await pipeline.express(held, held.readings, busy_devices={device}) == 0
    assert await stored(db, device) == {}
    assert await count(db, "SELECT count(*) AS n FROM alerts WHERE patient_id = %s", patient) == 0


async def test_held_readings_are_judged_in_order_so_an_artefact_is_not_an_alarm(
    db: psycopg.AsyncConnection[Any], settings: Settings
) -> None:
    """97 % taken first and 88 % a minute later, taken separately: the drop of 9 points is a
    motion artefact only if the 97 is judged first, as it is when held readings go with it."""
    [(patient, device)] = await patients_with_oximeters(db, 1)
    now = datetime.now(UTC)
    held = Batch()
    held.extend(
        decode([forwarded(settings, 0, oximeter(device, 1, 97, now - timedelta(minutes=1)))], settings)
    )
    taken = decode([forwarded(settings, 1, oximeter(device, 2, 88, now))], settings)
    held.extend(taken)
    async with Run(settings) as pipeline:
        assert await pipeline.express(held, taken.readings, busy_devices=set()) == 0
    assert await stored(db, device) == {1: [], 2: ["artefact"]}
    assert await count(db, "SELECT count(*) AS n FROM alerts WHERE patient_id = %s", patient) == 0


async def test_a_batch_held_up_in_the_database_does_not_hold_up_an_urgent_alert(
    db: psycopg.AsyncConnection[Any], settings: Settings, services: Services
) -> None:
    """The running processor: a batch waits on a row lock (its device's status update); an urgent
    reading of another patient sent meanwhile is stored and alerted on before that batch ends,
    and once it ends nothing is stored or alerted twice."""
    assert settings.database_url
    (_, blocked), (urgent, device) = await patients_with_oximeters(db, 2)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    lock = await psycopg.AsyncConnection.connect(settings.database_url)
    try:
        await lock.execute("SELECT 1 FROM devices WHERE id = %s FOR UPDATE", (blocked,))
        status = {"state": "online", "battery_pct": 80, "device_id": blocked}
        status["received_at"] = wire_time(datetime.now(UTC))
        await producer.send_and_wait(settings.status_topic, json.dumps(status).encode(), key=blocked.encode())

        async def batch_waits_on_the_lock() -> bool:
            query = """SELECT count(*) AS n FROM pg_stat_activity
                       WHERE wait_event_type = 'Lock' AND query LIKE 'UPDATE devices SET state%%'"""
            return await count(db, query) == 1

        await eventually(batch_waits_on_the_lock, timeout=15)
        now = datetime.now(UTC)
        value = json.dumps(oximeter(device, 1, 85, now)).encode()
        await producer.send_and_wait(settings.readings_topic, value, key=device.encode())

        async def alerted() -> bool:
            return await count(db, "SELECT count(*) AS n FROM alerts WHERE patient_id = %s", urgent) == 1

        await eventually(alerted, timeout=15)
        assert await batch_waits_on_the_lock(), "the batch in flight ended before the alert"
        assert await stored(db, device) == {1: []}
    finally:
        await lock.rollback()
        await lock.close()
        await producer.stop()

    async def status_stored() -> bool:
        return (
            await count(db, "SELECT count(*) AS n FROM devices WHERE id = %s AND state = 'online'", blocked)
            == 1
        )

    await eventually(status_stored, timeout=15)
    assert await count(db, "SELECT count(*) AS n FROM alerts WHERE patient_id = %s", urgent) == 1

    async def decided_once() -> bool:  # by the processor's consent step, after the commit
        return await count(db, "SELECT count(*) AS n FROM reading_consent WHERE device_id = %s", device) == 2

    await eventually(decided_once, timeout=15)
    assert not services.dead()
