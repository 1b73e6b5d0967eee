"""The pool's checkout check: free for a healthy idle connection, and a connection the server
ended is still found and replaced before a caller gets it."""

from __future__ import annotations

import asyncio
import select
from typing import Any

import psycopg

from telehealth.storage.db import check_unless_quiet, open_pool


async def _terminate(database_url: str, pid: int) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as killer:
        await killer.execute("SELECT pg_terminate_backend(%s)", (pid,))


async def _until_readable(conn: psycopg.AsyncConnection[Any]) -> None:
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN)
    for _ in range(100):
        if poller.poll(0):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the ended session never showed on the socket")


async def test_a_session_the_server_ended_fails_the_check(database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await check_unless_quiet(conn)
        await _terminate(database_url, conn.info.backend_pid)
        await _until_readable(conn)
        try:
            await check_unless_quiet(conn)
        except psycopg.OperationalError:
            pass
        else:
            raise AssertionError("a terminated session passed the check")


async def test_the_pool_replaces_a_connection_the_server_ended(database_url: str) -> None:
    pool = await open_pool(database_url, min_size=1, max_size=1, autocommit=True)
    try:
        async with pool.connection() as conn:
            first = conn.info.backend_pid
            await _terminate(database_url, first)
            await _until_readable(conn)
        async with pool.connection(timeout=10) as conn:
            cur = await conn.execute("SELECT pg_backend_pid() AS pid")
            row = await cur.fetchone()
            assert row is not None and row["pid"] != first
    finally:
        await pool.close()
