"""Connections: psycopg 3, async, pooled."""

from __future__ import annotations

import contextlib
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
    # check_connection costs one round trip per checkout and spares callers the dead
    # connections a database restart leaves in the pool.
    pool: AsyncConnectionPool = AsyncConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        open=False,
        kwargs={"row_factory": dict_row, "autocommit": autocommit},
        check=AsyncConnectionPool.check_connection,
        configure=configure,
    )
    await pool.open(wait=True, timeout=30)
    return pool


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
