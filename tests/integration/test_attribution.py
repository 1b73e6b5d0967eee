"""Attribution follows the registry at once: a reading the gateway accepts after a device's
re-assignment or revocation commits is never stored under the previous patient, however soon
after the change it comes (`CachedRegistry.current`, migration 0021_device_clock.sql).

Each case repeats in a loop, the reading published the moment the change has committed, to
catch the race between the change and the processor's device cache."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import psycopg
import pytest

from launcher.stack import Services
from simulators.publisher import Publisher
from telehealth.settings import Settings
from telehealth.storage.devices import reassign, revoke
from tests.conftest import eventually
from tests.factories import make_device, make_patient

ROUNDS = 8


@pytest.fixture
async def device_publisher(settings: Settings, services: Services) -> AsyncIterator[Publisher]:
    publisher = Publisher(settings.mqtt_relay_url(), client_id=f"attribution-{datetime.now().timestamp()}")
    await publisher.connect()
    yield publisher
    await publisher.close()


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
        owner = patients[seq % 2]
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
