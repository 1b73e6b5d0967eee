"""Connections: psycopg 3, async, pooled."""

from __future__ import annotations

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool


async def open_pool(
    url: str, *, min_size: int = 1, max_size: int = 8, autocommit: bool = False
) -> AsyncConnectionPool:
    # check_connection costs one round trip per checkout and spares callers the dead
    # connections a database restart leaves in the pool.
    pool: AsyncConnectionPool = AsyncConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        open=False,
        kwargs={"row_factory": dict_row, "autocommit": autocommit},
        check=AsyncConnectionPool.check_connection,
    )
    await pool.open(wait=True, timeout=30)
    return pool


async def connect(url: str) -> psycopg.AsyncConnection[dict[str, object]]:
    return await psycopg.AsyncConnection.connect(url, row_factory=dict_row)
