"""Connections: psycopg 3, async, pooled."""

from __future__ import annotations

import contextlib
import select
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout


async def open_pool(
    url: str,
    *,
    min_size: int = 1,
    max_size: int = 8,
    autocommit: bool = False,
    configure: Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]] | None = None,
) -> AsyncConnectionPool:
    """`configure` runs once on every new connection (it must leave no transaction open)."""
    pool: AsyncConnectionPool = AsyncConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        open=False,
        kwargs={"row_factory": dict_row, "autocommit": autocommit},
        check=check_unless_quiet,
        configure=configure,
    )
    await pool.open(wait=True, timeout=30)
    return pool


async def ping(conn: psycopg.AsyncConnection[Any]) -> None:
    """One round trip: raises when the database does not answer."""
    await conn.execute("SELECT 1")


async def local_timeouts(conn: psycopg.AsyncConnection[Any], *, lock_ms: int, statement_ms: int) -> None:
    """Lock and statement timeouts for the rest of the open transaction only."""
    await conn.execute(
        "SELECT set_config('lock_timeout', %s, true), set_config('statement_timeout', %s, true)",
        (f"{lock_ms}ms", f"{statement_ms}ms"),
    )


async def check_unless_quiet(conn: psycopg.AsyncConnection[Any]) -> None:
    """The pool's check on checkout, without its round trip while the socket is quiet.

    Checking spares callers the dead connections a database restart leaves in the pool. A
    server that ends a session (restart, `pg_terminate_backend`, idle timeout) sends a notice
    and closes the socket, which makes it readable; an idle healthy connection has nothing to
    read. So only a connection with something waiting pays for psycopg's full check (an empty
    query): it was one of six round trips in an audited API read.
    """
    if conn.closed or conn.broken:
        raise psycopg.OperationalError("the connection is closed")
    if has_input(conn):  # data, end of file or an error: ask the server
        await AsyncConnectionPool.check_connection(conn)


def has_input(conn: psycopg.AsyncConnection[Any]) -> bool:
    """Whether the connection's socket has something to read, without waiting."""
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN)
    return bool(poller.poll(0))


@asynccontextmanager
async def checkout(pool: AsyncConnectionPool, *, wait_s: float = 1.0) -> AsyncIterator[Any]:
    """A pooled connection, or a connection of its own when the pool has none ready.

    After a database restart psycopg's pool refills with exponential backoff (1, 2, 4, 8 s
    ...), so it can lag many seconds behind a database that is already back; a request should
    not wait for that. A direct connection is tried then, and fails fast if the database is
    really away."""
    conn = None
    with contextlib.suppress(PoolTimeout):
        conn = await pool.getconn(timeout=wait_s)
    if conn is not None:
        try:
            async with conn:  # commits, or rolls back on error; a pooled connection stays open
                yield conn
        finally:
            await pool.putconn(conn)
        return
    kwargs = cast(dict[str, Any], pool.kwargs)
    async with await psycopg.AsyncConnection.connect(cast(str, pool.conninfo), **kwargs) as own:
        yield own


async def connect(url: str) -> psycopg.AsyncConnection[dict[str, object]]:
    return await psycopg.AsyncConnection.connect(url, row_factory=dict_row)
