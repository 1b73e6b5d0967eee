"""What the admin commands share: the database they work on, one connection per command."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from psycopg import AsyncConnection

from telehealth.settings import get_settings

T = TypeVar("T")
ROLES = ("admin", "clinician", "researcher", "patient")


def database_url() -> str:
    settings = get_settings()
    settings.require("database_url")
    assert settings.database_url
    return settings.database_url


def with_connection(work: Callable[[AsyncConnection[Any]], Awaitable[T]]) -> T:
    """Run one piece of admin work on its own connection, committed at the end."""
    from telehealth.storage.db import connect

    async def go() -> T:
        async with await connect(database_url()) as conn:
            return await work(conn)

    return asyncio.run(go())
