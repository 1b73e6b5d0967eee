"""The gateway's spool: durable, ordered, bounded."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from gateway.spool import LETTER, READING, Mark, Spool, runs


def rows(n: int, start: int = 1) -> list[tuple[str, bytes, bytes, Mark]]:
    return [
        ("telehealth.readings", b"d-1", b"{}", Mark(READING, "d-1", seq)) for seq in range(start, start + n)
    ]


async def test_what_was_written_is_there_after_a_reopen(tmp_path: Path) -> None:
    """A crash of the gateway after `add` returned keeps the rows (SQLite commit, fsynced)."""
    spool = Spool(tmp_path / "s.sqlite3", 100)
    await spool.add(rows(3))
    await spool.add([("telehealth.deadletter", b"d-1", b"x", Mark(LETTER, ref="abc"))])
    await spool.put("kafka_cluster_id", "one")
    spool.close()
    again = Spool(tmp_path / "s.sqlite3", 100)
    try:
        found = await again.oldest(10)
        assert again.rows == 4
        assert [r.mark for r in found] == [
            Mark(READING, "d-1", 1),
            Mark(READING, "d-1", 2),
            Mark(READING, "d-1", 3),
            Mark(LETTER, ref="abc"),
        ]
        assert await again.get("kafka_cluster_id") == "one"
    finally:
        again.close()


async def test_forget_drops_only_what_was_stored_and_order_holds(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite3", 100)
    try:
        await spool.add(rows(5))
        first = await spool.oldest(5)
        await spool.forget([first[1].id, first[3].id])
        left = await spool.oldest(10)
        assert [r.mark.seq for r in left] == [1, 3, 5] and spool.rows == 3
        assert [r.mark.seq for r in await spool.oldest(10, after=left[0].id)] == [3, 5]
    finally:
        spool.close()


async def test_a_full_spool_holds_acks_until_rows_are_stored(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite3", 3)
    try:
        await spool.add(rows(3))
        waiting = asyncio.create_task(spool.add(rows(1, start=4)))
        await asyncio.sleep(0.05)  # time for the write to get as far as it can
        assert not waiting.done(), "no room: the write (and so the PUBACK) waits"
        await spool.forget([(await spool.oldest(1))[0].id])
        await asyncio.wait_for(waiting, 5)
        assert [r.mark.seq for r in await spool.oldest(10)] == [2, 3, 4]
    finally:
        spool.close()


@pytest.mark.parametrize("n", [0, 1])
async def test_an_empty_group_writes_nothing(tmp_path: Path, n: int) -> None:
    spool = Spool(tmp_path / "s.sqlite3", 10)
    try:
        await spool.add(rows(n))
        assert spool.rows == n
    finally:
        spool.close()


def test_the_gateways_client_id_is_stable_and_needs_its_secret(tmp_path: Path) -> None:
    from pydantic import SecretStr

    from gateway.session import client_id, spool_path
    from telehealth.settings import Settings

    def ours(password: str | None, **extra: object) -> Settings:
        secret = SecretStr(password) if password else None
        return Settings(
            _env_file=None,  # type: ignore[call-arg]
            gateway_client_id="gw-1",
            mqtt_gateway_password=secret,
            data_dir=tmp_path,
            **extra,
        )

    one = client_id(ours("secret-a"))
    assert one == client_id(ours("secret-a")), "stable across restarts: the broker keeps the session"
    assert one.startswith("gw-1-") and one != client_id(ours("secret-b"))
    assert client_id(ours(None)) == "gw-1"
    assert client_id(ours("secret-a", mqtt_insecure=True)) == "gw-1"
    assert spool_path(ours("secret-a")).parent == tmp_path / "gateway"


async def test_rows_that_are_never_confirmed_do_not_keep_the_rest_in_the_spool(tmp_path: Path) -> None:
    """A whole chunk the store does not know (records the processor could not decode) at the
    head of the spool: confirmation goes on past it, round by round."""
    from gateway.keeper import CHUNK, Keeper
    from gateway.records import BrokerEpoch
    from telehealth.settings import Settings

    class Store(Keeper):
        async def _stored(self, rows: list[tuple[int, Mark]]) -> list[int]:
            return [i for i, mark in rows if (mark.seq or 0) > CHUNK]  # the first chunk: never

    spool = Spool(tmp_path / "s.sqlite3", 100_000)
    try:
        await spool.add(rows(2 * CHUNK + 10))
        settings = Settings(_env_file=None, database_url="postgresql://unused")  # type: ignore[call-arg]
        keeper = Store(settings, spool, None, None, BrokerEpoch())  # type: ignore[arg-type]
        for _ in range(4):
            await keeper.confirm()
        assert spool.rows == CHUNK
        assert {r.mark.seq for r in await spool.oldest(2 * CHUNK)} == set(range(1, CHUNK + 1))
    finally:
        spool.close()


def test_ids_are_forgotten_as_runs_of_consecutive_ids() -> None:
    assert runs([7, 1, 2, 3, 5, 2, 8]) == [(1, 3), (5, 5), (7, 8)]
    assert runs([]) == []


async def test_forget_in_any_order_drops_exactly_those_rows(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite3", 100)
    try:
        await spool.add(rows(9))
        ids = [r.id for r in await spool.oldest(9)]
        gone = [ids[8], ids[0], ids[1], ids[4], ids[2], ids[7]]
        await spool.forget(gone)
        assert [r.mark.seq for r in await spool.oldest(10)] == [4, 6, 7]
        assert spool.rows == 3
    finally:
        spool.close()


async def test_a_group_stays_until_its_last_record_is_stored(tmp_path: Path) -> None:
    """One row per group of acks: records stored are forgotten at once (not read again, not
    replayed), the group's row goes with its last; after a restart the stored records of a
    group still held are confirmed against the store again, never lost."""
    path = tmp_path / "s.sqlite3"
    spool = Spool(path, 100)
    try:
        await spool.add(rows(3))
        await spool.add(rows(2, start=4))
        ids = [r.id for r in await spool.oldest(10)]
        assert ids == sorted(ids) and len(set(ids)) == 5
        await spool.forget([ids[0], ids[2], ids[0]])  # twice: counted once
        assert spool.rows == 3
        assert [m.seq for _, m in await spool.marks(10)] == [2, 4, 5]
        assert [m.seq for _, m in await spool.marks(10, after=ids[1])] == [4, 5]
        assert [m.seq for _, m in await spool.marks(1, after=ids[0])] == [2]
        await spool.forget(ids[3:])  # the second group, whole
        await spool.forget(ids[3:])  # again: already gone
        assert spool.rows == 1
    finally:
        spool.close()
    again = Spool(path, 100)
    try:
        assert [r.mark.seq for r in await again.oldest(10)] == [1, 2, 3], (
            "the first group's row is still there"
        )
        assert again.rows == 3
        await again.forget([r.id for r in await again.oldest(10)])
        assert again.rows == 0 and await again.oldest(10) == []
    finally:
        again.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM groups").fetchone() == (0,)


async def test_a_spool_of_rows_per_record_is_taken_over_in_its_order(tmp_path: Path) -> None:
    """A spool file written before groups (a row per record) still holds acknowledged records
    after an upgrade: they become groups, in the order written, and the old table goes."""
    path = tmp_path / "s.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(
            "CREATE TABLE spool (id INTEGER PRIMARY KEY, topic TEXT NOT NULL, key BLOB NOT NULL,"
            " value BLOB NOT NULL, kind TEXT NOT NULL, device_id TEXT, seq INTEGER, ref TEXT);"
            "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);"
            "INSERT INTO meta VALUES ('kafka_cluster_id', 'old');"
        )
        db.executemany(
            "INSERT INTO spool (id, topic, key, value, kind, device_id, seq, ref)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (10 + k, "telehealth.readings", b"d-1", b"v%d" % k, READING, "d-1", k, None)
                for k in range(2500)
            ]
            + [(9000, "telehealth.deadletter", b"", b"x", LETTER, None, None, "abc")],
        )
    spool = Spool(path, 10_000)
    try:
        found = await spool.oldest(10_000)
        assert spool.rows == 2501 == len(found)
        assert [r.mark for r in found[:2]] == [Mark(READING, "d-1", 0), Mark(READING, "d-1", 1)]
        assert found[-1].mark == Mark(LETTER, ref="abc") and found[-1].topic == "telehealth.deadletter"
        assert [r.value for r in found[:-1]] == [b"v%d" % k for k in range(2500)]
        assert await spool.get("kafka_cluster_id") == "old"
    finally:
        spool.close()
    with sqlite3.connect(path) as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "spool" not in tables
