"""An urgent reading commits before the rest of its batch (`processor.pipeline.urgent_first`).

The processor's pipeline is run here on records built by hand, against the real database, so
that one batch is known to hold both: Kafka decides batches by timing, which a test cannot.
The order is read off each reading's receipt, whose `stored_at` is the clock of the
transaction that stored it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg
from aiokafka.structs import ConsumerRecord

from processor import sink
from processor.pipeline import Pipeline, Report
from telehealth.settings import Settings
from telehealth.storage import open_pool
from telehealth.storage.devices import CachedRegistry
from tests.factories import make_device, make_patient
from tests.stream import forwarded, oximeter


class Probe:
    def __init__(self, look: Callable[[], Awaitable[None]]) -> None:
        self._look = look

    async def publish(self) -> None:
        await self._look()


async def run(
    settings: Settings,
    records: list[ConsumerRecord[Any, Any]],
    urgent_committed: Callable[[], Awaitable[None]] | None = None,
) -> Report:
    assert settings.database_url
    pool = await open_pool(settings.database_url, max_size=2, configure=sink.prepare)
    registry = CachedRegistry(settings.database_url, settings.device_cache_ttl_s)
    try:
        # The probe stands where the service's alert outbox is, to look at the database then.
        outbox = Probe(urgent_committed) if urgent_committed is not None else None
        pipeline = Pipeline(settings, pool, registry, outbox=outbox)
        report = await pipeline.process(records)
        await pipeline.consent.drain(pool)  # what the processor's consent step does next
        return report
    finally:
        await registry.close()
        await pool.close()


async def decisions(db: psycopg.AsyncConnection[Any], devices: list[str]) -> dict[str, set[datetime]]:
    """When each device's readings were stored: one value per transaction."""
    cur = await db.execute(
        "SELECT device_id, stored_at FROM reading_receipts WHERE device_id = ANY(%s)", (devices,)
    )
    out: dict[str, set[datetime]] = {}
    for row in await cur.fetchall():
        out.setdefault(row["device_id"], set()).add(row["stored_at"])
    return out


async def test_an_urgent_patients_readings_commit_before_the_rest_of_the_batch(
    db: psycopg.AsyncConnection[Any], settings: Settings
) -> None:
    patients: list[UUID] = [await make_patient(db, "team-urgent-first") for _ in range(4)]
    devices = [(await make_device(db, p, "oximeter")).device_id for p in patients]
    calm, urgent = devices[:3], devices[3]
    records = [forwarded(settings, i, oximeter(d, 1, 97, datetime.now(UTC))) for i, d in enumerate(calm)]
    records += [
        forwarded(settings, 3, oximeter(urgent, 1, 95, datetime.now(UTC))),
        forwarded(settings, 4, oximeter(urgent, 2, 91, datetime.now(UTC))),
    ]
    records += [forwarded(settings, 5 + i, oximeter(d, 2, 98, datetime.now(UTC))) for i, d in enumerate(calm)]
    between: dict[str, int] = {}

    async def urgent_committed() -> None:  # where the pipeline publishes the alert outbox
        for name, query, arg in [
            (
                "calm readings stored",
                "SELECT count(*) AS n FROM reading_receipts WHERE device_id = ANY(%s)",
                calm,
            ),
            ("alerts", "SELECT count(*) AS n FROM alerts WHERE patient_id = %s", patients[3]),
        ]:
            cur = await db.execute(query, (arg,))
            row = await cur.fetchone()
            between[name] = row["n"] if row else -1

    report = await run(settings, records, urgent_committed)
    assert (report.stored, report.duplicates, report.dead_letters, report.alerts) == (8, 0, 0, 1)
    assert between == {"calm readings stored": 0, "alerts": 1}

    decided = await decisions(db, devices)
    # the urgent patient's readings, the calm one before the alarm included (95 then 91: a
    # drop of 4, not a motion artefact), in one transaction
    [first] = decided[urgent]
    # every other reading of the batch in one later transaction
    rest = set().union(*(decided[d] for d in calm))
    assert len(rest) == 1 and first < min(rest), decided
    cur = await db.execute(
        """SELECT e.at FROM alerts a JOIN alert_events e ON e.alert_id = a.id
           WHERE a.patient_id = %s AND a.rule = 'spo2_low' AND e.status = 'open'""",
        (patients[3],),
    )
    [opened] = await cur.fetchall()
    assert opened["at"] <= first < min(rest)


async def test_a_batch_with_nothing_urgent_is_one_transaction(
    db: psycopg.AsyncConnection[Any], settings: Settings
) -> None:
    devices = [
        (await make_device(db, await make_patient(db, "team-urgent-first"), "oximeter")).device_id
        for _ in range(3)
    ]
    records = [forwarded(settings, i, oximeter(d, 1, 97, datetime.now(UTC))) for i, d in enumerate(devices)]
    report = await run(settings, records)
    assert report.stored == 3
    decided = await decisions(db, devices)
    assert len(set().union(*decided.values())) == 1, decided


async def test_a_crash_between_the_two_transactions_replays_cleanly(
    db: psycopg.AsyncConnection[Any], settings: Settings
) -> None:
    """The urgent part committed, then the processor died before the rest (so before the offset
    commit): the whole batch comes again. Its urgent part is now duplicates, the rest is new, and
    nothing is stored, alerted on or decided twice."""
    patients = [await make_patient(db, "team-urgent-first") for _ in range(3)]
    devices = [(await make_device(db, p, "oximeter")).device_id for p in patients]
    urgent = devices[2]
    records = [
        forwarded(settings, 0, oximeter(devices[0], 1, 97, datetime.now(UTC))),
        forwarded(settings, 1, oximeter(devices[1], 1, 97, datetime.now(UTC))),
    ]
    records += [
        forwarded(settings, 2, oximeter(urgent, 1, 95, datetime.now(UTC))),
        forwarded(settings, 3, oximeter(urgent, 2, 91, datetime.now(UTC))),
    ]
    landed = await run(settings, records[2:])  # what the first transaction of the batch wrote
    assert (landed.stored, landed.alerts) == (2, 1)

    replay = await run(settings, records)
    assert (replay.stored, replay.duplicates, replay.alerts) == (2, 2, 0)
    cur = await db.execute(
        "SELECT device_id, count(*) AS n FROM reading_consent WHERE device_id = ANY(%s) GROUP BY 1",
        (devices,),
    )
    # two observations (SpO2 and pulse) per reading, each decided once
    assert {r["device_id"]: r["n"] for r in await cur.fetchall()} == {
        devices[0]: 2,
        devices[1]: 2,
        urgent: 4,
    }
    cur = await db.execute(
        "SELECT count(*) AS n FROM alerts WHERE patient_id = %s AND rule = 'spo2_low'", (patients[2],)
    )
    assert await cur.fetchone() == {"n": 1}
