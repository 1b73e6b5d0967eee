"""Attribution follows the registry at once: a reading the gateway accepts after a device's
re-assignment or revocation commits is never stored under the previous patient, however soon
after the change it comes (`CachedRegistry.current`, migration 0021_device_clock.sql).

Each case repeats in a loop, the reading published the moment the change has committed, to
catch the race between the change and the processor's device cache."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from aiokafka.structs import ConsumerRecord

from processor import sink
from processor.pipeline import Pipeline
from simulators.publisher import Publisher
from telehealth.settings import Settings
from telehealth.storage import open_pool
from telehealth.storage.devices import CachedRegistry, reassign, revoke
from tests.conftest import eventually
from tests.factories import make_device, make_patient
from tests.stream import forwarded

ROUNDS = 8


def glucose(value: float) -> list[dict[str, Any]]:
    return [{"code": "glucose", "value": value, "unit": "mmol/L", "source": "cgm"}]


async def _owner(db: psycopg.AsyncConnection[Any], device: str, seq: int) -> Any:
    """The patient a reading was stored under (None: not stored yet)."""
    cur = await db.execute(
        "SELECT patient_id FROM reading_receipts WHERE device_id = %s AND seq = %s", (device, seq)
    )
    row = await cur.fetchone()
    return None if row is None else row["patient_id"]


async def test_a_reading_right_after_reassignment_goes_to_the_new_patient(
    db: psycopg.AsyncConnection[Any], device_publisher: Publisher
) -> None:
    patients = [await make_patient(db, "team-attribution") for _ in range(2)]
    device = (await make_device(db, patients[0], "cgm")).device_id
    device_publisher.publish_reading(device, 1, glucose(6.0))
    assert await device_publisher.drain()
    # stored under the first patient: the processor's cache now holds that entry
    assert await eventually(lambda: _owner(db, device, 1)) == patients[0]
    for seq in range(2, 2 + ROUNDS):
        owner = patients[(seq + 1) % 2]  # the other patient each round, starting with the second
        await reassign(db, device, owner)  # committed (autocommit) when this returns
        device_publisher.publish_reading(device, seq, glucose(6.0 + seq / 10))
        assert await device_publisher.drain()
        stored = await eventually(lambda: _owner(db, device, seq))  # noqa: B023 (awaited here)
        assert stored == owner, f"round {seq}: reading stored under the previous patient"
    cur = await db.execute(
        "SELECT DISTINCT r.patient_id = c.patient_id AS same FROM readings r"
        " JOIN reading_receipts c USING (device_id, seq) WHERE r.device_id = %s",
        (device,),
    )
    assert await cur.fetchall() == [{"same": True}], "readings and receipts agree on the patient"


async def test_a_reading_right_after_revocation_is_refused(
    db: psycopg.AsyncConnection[Any], device_publisher: Publisher
) -> None:
    for _ in range(ROUNDS):
        patient = await make_patient(db, "team-attribution")
        device = (await make_device(db, patient, "cgm")).device_id
        device_publisher.publish_reading(device, 1, glucose(6.0))
        assert await device_publisher.drain()
        assert await eventually(lambda: _owner(db, device, 1)) == patient  # noqa: B023
        assert await revoke(db, device)
        device_publisher.publish_reading(device, 2, glucose(2.2))
        assert await device_publisher.drain()

        async def refused() -> list[dict[str, Any]]:
            cur = await db.execute(
                "SELECT reason, detail FROM dead_letters WHERE device_id = %s",
                (device,),  # noqa: B023
            )
            return await cur.fetchall()

        [letter] = await eventually(refused)
        assert letter["reason"] == "revoked_device", letter
        # The letter commits with (or after) anything else of its batch: the reading is not stored.
        assert await _owner(db, device, 2) is None
        cur = await db.execute(
            "SELECT count(*) AS n FROM readings WHERE device_id = %s AND seq = 2", (device,)
        )
        assert await cur.fetchone() == {"n": 0}


async def _database_now(db: psycopg.AsyncConnection[Any]) -> datetime:
    cur = await db.execute("SELECT clock_timestamp() AS now")
    row = await cur.fetchone()
    assert row is not None
    now: datetime = row["now"]
    return now


def _record(settings: Settings, device: str, seq: int, received_at: datetime) -> ConsumerRecord[Any, Any]:
    """A reading as the gateway forwards it, received at `received_at`."""
    at = received_at.isoformat()
    document = {
        "device_id": device,
        "seq": seq,
        "measured_at": at,
        "received_at": at,
        "observations": glucose(3.5),
    }
    return forwarded(settings, seq, document)


async def test_a_reading_received_before_a_reassignment_goes_to_neither_patient(
    db: psycopg.AsyncConnection[Any], settings: Settings
) -> None:
    """A reading the gateway received under the old owner, processed only after the device was
    given to someone else (a backlog, a processor restart): never the new patient's, and
    dead-lettered rather than guessed. The pipeline runs by hand here, on records built with the
    receipt times a test needs (the gateway stamps its own clock)."""
    assert settings.database_url
    old, new = await make_patient(db, "team-attribution"), await make_patient(db, "team-attribution")
    device = (await make_device(db, old, "cgm")).device_id
    before = await _database_now(db)
    await reassign(db, device, new)
    after = await _database_now(db)
    pool = await open_pool(settings.database_url, max_size=2, configure=sink.prepare)
    registry = CachedRegistry(settings.database_url, settings.device_cache_ttl_s)
    try:
        report = await Pipeline(settings, pool, registry).process(
            [_record(settings, device, 1, before), _record(settings, device, 2, after)]
        )
    finally:
        await registry.close()
        await pool.close()
    assert (report.stored, report.dead_letters) == (1, 1)
    assert await _owner(db, device, 1) is None
    assert await _owner(db, device, 2) == new
    cur = await db.execute("SELECT reason, origin FROM dead_letters WHERE device_id = %s", (device,))
    assert await cur.fetchall() == [{"reason": "reassigned_device", "origin": f"reassigned:{device}:1"}]
