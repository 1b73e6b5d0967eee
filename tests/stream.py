"""What the stream stored, read from the database: the checks the end-to-end tests wait on."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import psycopg

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
