"""The gateway's durable spool: every record it acknowledges over MQTT, until it is stored.

The embedded Kafka broker keeps memory only: a crash of it loses records it had accepted, and
the gateway had PUBACKed their messages by then. So before a PUBACK goes out, the records of
that message are written to this SQLite file (WAL, `synchronous=FULL`: the commit is on disk),
one transaction per group of acks. A row leaves the spool once PostgreSQL holds what it stands
for (`gateway.confirm`); after the broker lost its data (a new cluster id, `gateway.keeper`)
every row still here is produced again, and the store's dedup on (device, seq), the dead
letters' ids and the status time make the replay harmless.

Blocking SQLite calls run on one worker thread of their own, never on the event loop.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

#: what a spooled record stands for, checked against PostgreSQL before the row is dropped
READING, LETTER, STATUS = "reading", "letter", "status"


class Mark(NamedTuple):
    """A record's identity in the store: ("reading", device, seq, None), ("letter", None, None,
    letter id) or ("status", device, None, received_at ISO). A named tuple: one is made for
    every record acknowledged and again for every row confirmed."""

    kind: str
    device_id: str | None = None
    seq: int | None = None
    ref: str | None = None


@dataclass(frozen=True)
class Spooled:
    id: int
    topic: str
    key: bytes
    value: bytes
    mark: Mark


_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    id        INTEGER PRIMARY KEY,
    topic     TEXT NOT NULL,
    key       BLOB NOT NULL,
    value     BLOB NOT NULL,
    kind      TEXT NOT NULL,
    device_id TEXT,
    seq       INTEGER,
    ref       TEXT
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class Spool:
    """A bounded, fsynced queue of records in one SQLite file."""

    def __init__(self, path: Path, max_rows: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_rows = max_rows
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._io = ThreadPoolExecutor(1, thread_name_prefix="spool")
        row = self._db.execute("SELECT count(*) FROM spool").fetchone()
        #: rows held now (kept in memory: the bound is checked before every group of acks)
        self.rows = int(row[0])
        self._room = asyncio.Event()

    async def _run(self, call: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._io, call, *args)

    async def add(self, records: Sequence[tuple[str, bytes, bytes, Mark]]) -> None:
        """Write records durably (one transaction, on disk when this returns). Waits while the
        spool is full: acks are held back then, and the MQTT broker keeps the messages."""
        if not records:
            return
        while self.rows >= self.max_rows:
            self._room.clear()
            await self._room.wait()
        await self._run(self._add, records)
        self.rows += len(records)

    def _add(self, records: Sequence[tuple[str, bytes, bytes, Mark]]) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO spool (topic, key, value, kind, device_id, seq, ref)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(t, k, v, m.kind, m.device_id, m.seq, m.ref) for t, k, v, m in records],
            )

    async def oldest(self, limit: int, after: int = 0) -> list[Spooled]:
        """Rows in the order they were written, from id `after` on."""
        rows: list[tuple[Any, ...]] = await self._run(self._oldest, limit, after)
        return [Spooled(r[0], r[1], r[2], r[3], Mark(r[4], r[5], r[6], r[7])) for r in rows]

    def _oldest(self, limit: int, after: int) -> list[tuple[Any, ...]]:
        return self._db.execute(
            "SELECT id, topic, key, value, kind, device_id, seq, ref FROM spool"
            " WHERE id > ? ORDER BY id LIMIT ?",
            (after, limit),
        ).fetchall()

    async def marks(self, limit: int, after: int = 0) -> list[tuple[int, Mark]]:
        """Rows' ids and marks only (what confirmation needs), in the order written."""
        rows: list[tuple[Any, ...]] = await self._run(self._marks, limit, after)
        return [(r[0], Mark._make(r[1:])) for r in rows]

    def _marks(self, limit: int, after: int) -> list[tuple[Any, ...]]:
        return self._db.execute(
            "SELECT id, kind, device_id, seq, ref FROM spool WHERE id > ? ORDER BY id LIMIT ?", (after, limit)
        ).fetchall()

    async def forget(self, ids: Sequence[int]) -> None:
        """Drop rows whose records are stored."""
        if not ids:
            return
        removed: int = await self._run(self._forget, ids)
        self.rows -= removed
        if self.rows < self.max_rows:
            self._room.set()

    def _forget(self, ids: Sequence[int]) -> int:
        with self._db:
            self._db.execute("BEGIN")
            cur = self._db.executemany("DELETE FROM spool WHERE id BETWEEN ? AND ?", runs(ids))
            return cur.rowcount

    async def get(self, name: str) -> str | None:
        row = await self._run(
            lambda: self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        )
        return None if row is None else str(row[0])

    async def put(self, name: str, value: str) -> None:
        await self._run(
            lambda: self._db.execute(
                "INSERT INTO meta (name, value) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (name, value),
            )
        )

    def close(self) -> None:
        self._io.shutdown(wait=True)
        self._db.close()


def runs(ids: Sequence[int]) -> list[tuple[int, int]]:
    """The ids as (first, last) runs of consecutive ids: confirmed rows are mostly a few long
    runs, and a range is deleted in one step rather than a look-up per id."""
    found: list[tuple[int, int]] = []
    for i in sorted(set(ids)):
        if found and i == found[-1][1] + 1:
            found[-1] = (found[-1][0], i)
        else:
            found.append((i, i))
    return found
