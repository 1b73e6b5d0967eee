"""Direct care never waits on secondary use: with the consent tables locked by another
connection, an urgent low is stored and alerted on at once, and reaches research only once
the lock is gone, and only if consent allows (`processor.consent`)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import httpx
import psycopg

from launcher.stack import Services
from simulators.publisher import Publisher
from telehealth.settings import Settings
from tests.conftest import eventually, metric, metrics_url
from tests.factories import make_device, make_patient, make_user
from tests.research_support import RESEARCH_GLUCOSE, put_consent
from tests.stream import count

#: every table the consent step reads or writes (the rollups hang off research_readings)
CONSENT_TABLES = "consent_clock, patient_consents, reading_consent, research_readings"
FAILURES = "telehealth_processor_consent_step_failures_total"


async def test_an_urgent_low_is_stored_and_alerted_while_the_consent_tables_are_locked(
    db: psycopg.AsyncConnection[Any],
    http: httpx.AsyncClient,
    settings: Settings,
    services: Services,
    device_publisher: Publisher,
) -> None:
    assert settings.database_url
    admin = await make_user(db, "admin")
    consenting, silent = await make_patient(db, "team-carepath"), await make_patient(db, "team-carepath")
    await put_consent(http, admin, consenting, RESEARCH_GLUCOSE)
    devices = {p: (await make_device(db, p, "cgm")).device_id for p in (consenting, silent)}
    patients: list[UUID] = [consenting, silent]
    processor = metrics_url(services, "processor")
    failures_before = metric(processor, FAILURES)

    async with await psycopg.AsyncConnection.connect(settings.database_url) as locker:
        await locker.execute(f"LOCK TABLE {CONSENT_TABLES} IN ACCESS EXCLUSIVE MODE")
        for device in devices.values():
            device_publisher.publish_reading(
                device, 1, [{"code": "glucose", "value": 2.2, "unit": "mmol/L", "source": "cgm"}]
            )
        assert await device_publisher.drain()

        async def stored() -> bool:
            n = await count(
                db, "SELECT count(*) FROM readings WHERE device_id = ANY(%s)", list(devices.values())
            )
            return n == 2

        async def alerted() -> bool:
            n = await count(
                db,
                """SELECT count(DISTINCT patient_id) FROM alerts WHERE patient_id = ANY(%s)
                   AND rule = 'glucose_low' AND severity = 'urgent' AND status = 'open'""",
                patients,
            )
            return n == 2

        await eventually(stored)
        await eventually(alerted)
        # The consent step ran into the lock and gave up: the readings wait, undecided.
        await eventually(lambda: _true(metric(processor, FAILURES) > failures_before))
        pending = await count(
            db, "SELECT count(*) FROM consent_pending WHERE device_id = ANY(%s)", list(devices.values())
        )
        assert pending == 2
        # Read through the lock holder: nothing decided, nothing in research yet.
        assert (
            await count(
                locker,
                "SELECT count(*) FROM reading_consent WHERE device_id = ANY(%s)",
                list(devices.values()),
            )
            == 0
        )
        assert (
            await count(locker, "SELECT count(*) FROM research_readings WHERE patient_id = ANY(%s)", patients)
            == 0
        )
        assert not locker.closed and locker.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
    # The lock is released (the transaction rolled back with the connection).

    async def decided() -> bool:
        n = await count(
            db, "SELECT count(*) FROM reading_consent WHERE device_id = ANY(%s)", list(devices.values())
        )
        return n == 2

    await eventually(decided)
    assert (
        await count(
            db, "SELECT count(*) FROM consent_pending WHERE device_id = ANY(%s)", list(devices.values())
        )
        == 0
    )
    cur = await db.execute(
        """SELECT patient_id, purpose, value, consent_version FROM research_readings
           WHERE patient_id = ANY(%s)""",
        (patients,),
    )
    # only the consenting patient's reading, with the version that permitted it
    assert await cur.fetchall() == [
        {"patient_id": consenting, "purpose": "research", "value": 2.2, "consent_version": 1}
    ]
    cur = await db.execute(
        "SELECT patient_id, eligible FROM reading_consent WHERE device_id = ANY(%s)",
        (list(devices.values()),),
    )
    assert {(r["patient_id"], tuple(r["eligible"])) for r in await cur.fetchall()} == {
        (consenting, ("research",)),
        (silent, ()),
    }


async def _true(value: bool) -> bool:
    return value
