"""What the stream stored, read from the database: the checks the end-to-end tests wait on."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from datetime import datetime
from typing import Any

import psycopg
from aiokafka.structs import ConsumerRecord

from telehealth.contracts import wire_time
from telehealth.settings import Settings
from tests.conftest import eventually


async def stored(db: psycopg.AsyncConnection[Any], device_id: str) -> int:
    """How many of the device's readings are stored (one receipt per reading)."""
    cur = await db.execute("SELECT count(*) AS n FROM reading_receipts WHERE device_id = %s", (device_id,))
    row = await cur.fetchone()
    assert row is not None
    return int(row["n"] if isinstance(row, dict) else row[0])


async def count(db: psycopg.AsyncConnection[Any], sql: str, *args: Any) -> int:
    """The one number a `SELECT count(...)` query answers, whichever row factory `db` has."""
    cur = await db.execute(sql, args)
    row = await cur.fetchone()
    assert row is not None
    return int(next(iter(row.values())) if isinstance(row, dict) else row[0])


async def above(db: psycopg.AsyncConnection[Any], device_id: str, n: int) -> bool:
    return await stored(db, device_id) > n


async def resolves_to(value: Awaitable[Any], expected: Any) -> bool:
    """`eventually(lambda: resolves_to(stored(db, d), 288))`: a query awaited, then compared."""
    return bool(await value == expected)


async def settled(db: psycopg.AsyncConnection[Any]) -> None:
    """Wait until nothing is left to replay: a gateway and a processor have each reported an
    empty backlog (nothing unacked, nothing fetched and uncommitted, no consumer lag) in a
    heartbeat whose lag sample was taken after this call began."""
    cur = await db.execute("SELECT now() AS t")
    since = (await cur.fetchone())["t"]  # type: ignore[index]

    async def quiet() -> bool:
        cur = await db.execute(
            """SELECT service, backlog FROM service_heartbeats
               WHERE service IN ('gateway', 'processor') AND beat_at > %s + interval '1.5 seconds'""",
            (since,),
        )
        rows = await cur.fetchall()
        return {r["service"] for r in rows} == {"gateway", "processor"} and all(
            r["backlog"] == 0 for r in rows
        )

    await eventually(quiet)


def forwarded(settings: Settings, offset: int, document: dict[str, Any]) -> ConsumerRecord[Any, Any]:
    """A reading document as the gateway puts it on the readings topic (key: the device id),
    for tests that run the processor's pipeline on records they build by hand."""
    value = json.dumps(document).encode()
    key = str(document["device_id"]).encode()
    return ConsumerRecord(settings.readings_topic, 0, offset, 0, 0, key, value, None, 0, len(value), [])


def oximeter(device: str, seq: int, spo2: float, at: datetime) -> dict[str, Any]:
    """An oximeter's reading (SpO2 and a calm pulse), measured and received at `at`."""
    return {
        "device_id": device,
        "seq": seq,
        "measured_at": wire_time(at),
        "received_at": wire_time(at),
        "observations": [
            {"code": "spo2", "value": spo2, "unit": "%"},
            {"code": "pulse", "value": 70, "unit": "/min"},
        ],
    }
