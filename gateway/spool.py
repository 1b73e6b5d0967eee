"""The gateway's durable spool: every record it acknowledges over MQTT, until it is stored.

The embedded Kafka broker keeps memory only: a crash of it loses records it had accepted, and
the gateway had PUBACKed their messages by then. So before a PUBACK goes out, the records of
that message are written to this SQLite file (WAL, `synchronous=FULL`: the commit is on disk),
one row and one transaction per group of acks. A record is forgotten once PostgreSQL holds what
it stands for, and a group's row goes with its last record (`gateway.keeper`); after the broker
lost its data (a new cluster id) every record still here is produced again, and the store's
dedup on (device, seq), the dead letters' ids and the status time make the replay harmless.

Blocking SQLite calls run on one worker thread of their own, never on the event loop.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import msgspec

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
CREATE TABLE IF NOT EXISTS groups (
    id      INTEGER PRIMARY KEY,
    n       INTEGER NOT NULL,
    marks   BLOB NOT NULL,
    records BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

#: a record's id is its group's id shifted left by this, plus its place in the group: ids keep
#: the order written, and a group holds at most 2**SHIFT records
SHIFT = 20
_IN_GROUP = (1 << SHIFT) - 1

_ENCODE = msgspec.msgpack.Encoder()
_MARKS = msgspec.msgpack.Decoder(list[Mark])
_RECORDS = msgspec.msgpack.Decoder(list[tuple[str, bytes, bytes]])


class Spool:
    """A bounded, fsynced queue of records in one SQLite file, one row per group of acks.

    A row per record cost the gateway 13 µs of CPU per reading (SQLite's per-row insert, read
    back and delete); a row per group pays those once for the group. A group's row goes once
    every record in it is stored; until then the records already stored are remembered in
    memory, and after a restart they are confirmed against the store again."""

    def __init__(self, path: Path, max_rows: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_rows = max_rows
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._adopt_rows()
        self._io = ThreadPoolExecutor(1, thread_name_prefix="spool")
        # Read and changed on the spool's thread only.
        self._sizes: dict[int, int] = dict(self._db.execute("SELECT id, n FROM groups").fetchall())
        self._gone: dict[int, set[int]] = {}  # records stored, of groups not yet dropped
        #: records held now (kept in memory: the bound is checked before every group of acks)
        self.rows = sum(self._sizes.values())
        self._room = asyncio.Event()

    def _adopt_rows(self) -> None:
        """A spool written a row per record (before groups) becomes groups, in its order."""
        found = self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'spool'")
        if found.fetchone() is None:
            return
        with self._db:
            self._db.execute("BEGIN")
            rows = self._db.execute(
                "SELECT topic, key, value, kind, device_id, seq, ref FROM spool ORDER BY id"
            ).fetchall()
            for k in range(0, len(rows), 1000):
                self._insert([(r[0], r[1], r[2], Mark._make(r[3:])) for r in rows[k : k + 1000]])
            self._db.execute("DROP TABLE spool")

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
        written = {}
        with self._db:
            self._db.execute("BEGIN")
            for k in range(0, len(records), _IN_GROUP):
                part = records[k : k + _IN_GROUP]
                written[self._insert(part)] = len(part)
        self._sizes.update(written)  # once committed: a failed write leaves no group behind

    def _insert(self, records: Sequence[tuple[str, bytes, bytes, Mark]]) -> int:
        cur = self._db.execute(
            "INSERT INTO groups (n, marks, records) VALUES (?, ?, ?)",
            (
                len(records),
                _ENCODE.encode([m for _, _, _, m in records]),
                _ENCODE.encode([(t, k, v) for t, k, v, _ in records]),
            ),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    async def oldest(self, limit: int, after: int = 0) -> list[Spooled]:
        """Records in the order they were written, after id `after`."""
        found: list[Spooled] = await self._run(self._oldest, limit, after)
        return found

    def _oldest(self, limit: int, after: int) -> list[Spooled]:
        found: list[Spooled] = []
        for group, kept, (marks, records) in self._held(limit, after, "marks, records"):
            ms, rs = _MARKS.decode(marks), _RECORDS.decode(records)
            found += [Spooled(group << SHIFT | i, *rs[i], ms[i]) for i in kept]
        return found

    async def marks(self, limit: int, after: int = 0) -> list[tuple[int, Mark]]:
        """Records' ids and marks only (what confirmation needs), in the order written."""
        found: list[tuple[int, Mark]] = await self._run(self._marks, limit, after)
        return found

    def _marks(self, limit: int, after: int) -> list[tuple[int, Mark]]:
        found: list[tuple[int, Mark]] = []
        for group, kept, (marks,) in self._held(limit, after, "marks"):
            ms = _MARKS.decode(marks)
            found += [(group << SHIFT | i, ms[i]) for i in kept]
        return found

    def _held(self, limit: int, after: int, columns: str) -> Iterator[tuple[int, list[int], list[bytes]]]:
        """Groups in the order written with their records after id `after` not yet stored (at
        most `limit` in all), and the group's `columns`."""
        rows = self._db.execute(
            f"SELECT id, {columns} FROM groups WHERE id >= ? ORDER BY id", (after >> SHIFT,)
        )
        left = limit
        for group, *blobs in rows:
            if kept := self._kept(group, after, left):
                yield group, kept, blobs
                left -= len(kept)
            if left <= 0:
                return

    def _kept(self, group: int, after: int, limit: int) -> list[int]:
        """The places in `group` of records after id `after` not yet stored, at most `limit`."""
        first = after - (group << SHIFT) + 1 if after >> SHIFT == group else 0
        gone = self._gone.get(group, ())
        return [i for i in range(max(first, 0), self._sizes.get(group, 0)) if i not in gone][:limit]

    async def forget(self, ids: Sequence[int]) -> None:
        """Drop records that are stored (a group's row, once all of its records are)."""
        if not ids:
            return
        removed: int = await self._run(self._forget, ids)
        self.rows -= removed
        if self.rows < self.max_rows:
            self._room.set()

    def _forget(self, ids: Sequence[int]) -> int:
        by_group: dict[int, list[int]] = {}
        for record in ids:
            by_group.setdefault(record >> SHIFT, []).append(record & _IN_GROUP)
        removed = 0
        done = []
        for group, places in by_group.items():
            size = self._sizes.get(group)
            if size is None:  # a group already dropped
                continue
            gone = self._gone.setdefault(group, set())
            held = len(gone)
            gone.update(i for i in places if i < size)
            removed += len(gone) - held
            if len(gone) == size:
                done.append(group)
        if done:
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany("DELETE FROM groups WHERE id BETWEEN ? AND ?", runs(done))
            for g in done:
                del self._sizes[g], self._gone[g]
        return removed

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
    """The ids as (first, last) runs of consecutive ids: confirmed groups are mostly a few
    long runs, and a range is deleted in one step rather than a look-up per id."""
    found: list[tuple[int, int]] = []
    for i in sorted(set(ids)):
        if found and i == found[-1][1] + 1:
            found[-1] = (found[-1][0], i)
        else:
            found.append((i, i))
    return found
