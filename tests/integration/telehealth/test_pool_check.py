"""The pool's checkout check: free for a healthy idle connection, and a connection the server
ended is still found and replaced before a caller gets it."""

from __future__ import annotations

import os
import tempfile
from typing import Any

import psycopg
import pytest

from telehealth.storage.db import check_unless_quiet, has_input, open_pool
from tests.conftest import eventually


async def _terminate(database_url: str, pid: int) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as killer:
        await killer.execute("SELECT pg_terminate_backend(%s)", (pid,))


async def _until_readable(conn: psycopg.AsyncConnection[Any]) -> None:
    async def readable() -> bool:
        return has_input(conn)

    await eventually(readable, timeout=2, interval=0.02)


async def test_a_healthy_idle_connection_is_checked_without_a_message_to_the_server(
    database_url: str,
) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        with tempfile.TemporaryFile() as trace:  # libpq's protocol trace: every message sent
            conn.pgconn.trace(trace.fileno())
            try:
                await check_unless_quiet(conn)
                quiet = os.fstat(trace.fileno()).st_size
                await conn.execute("")  # psycopg's own check, to show the trace records it
                asked = os.fstat(trace.fileno()).st_size
            finally:
                conn.pgconn.untrace()
        assert quiet == 0 and asked > 0


async def test_a_session_the_server_ended_fails_the_check(database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await check_unless_quiet(conn)
        await _terminate(database_url, conn.info.backend_pid)
        await _until_readable(conn)
        with pytest.raises(psycopg.OperationalError):
            await check_unless_quiet(conn)


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
