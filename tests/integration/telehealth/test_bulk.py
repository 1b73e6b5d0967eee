"""Binary COPY with remembered `text[]` and `jsonb` values stores exactly what psycopg's own
dumpers store, for the values it remembers, those it does not, and past its bound."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import pq

from telehealth.storage.bulk import REMEMBERED_MAX, Columns, copy_in, remember_small_values

ROWS: list[tuple[Any, Any]] = [
    (["research", "planning"], {}),
    ([], {}),
    (["late"], {"supplemental_o2": False, "nested": [1, "x", None]}),
    (["research", "planning"], {}),  # again: from memory
    (None, None),
    (["with", None], {}),  # not a list of strings only: dumped afresh
    (["ünïcode", 'ä,"{}'], {"k": "v"}),
]
# more distinct lists than are remembered
ROWS += [([f"p{i}"], {}) for i in range(REMEMBERED_MAX + 10)]
TABLE = Columns("copied", (("n", "int4"), ("tags", "text[]"), ("doc", "jsonb")))


async def test_remembered_values_are_stored_as_psycopg_stores_them(database_url: str) -> None:
    stored = {}
    for remember in (False, True):
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            if remember:
                remember_small_values(conn)
                for oid in (1009, 3802):  # text[], jsonb: what COPY's declared types look up
                    assert conn.adapters.get_dumper_by_oid(oid, pq.Format.BINARY).__name__.startswith(
                        "Remembering"
                    )
            await conn.execute("CREATE TEMP TABLE copied (n int4, tags text[], doc jsonb)")
            async with conn.cursor() as cur:
                await copy_in(cur, TABLE, [(i, *row) for i, row in enumerate(ROWS)])
                await cur.execute("SELECT tags, doc FROM copied ORDER BY n")
                stored[remember] = await cur.fetchall()
    assert stored[True] == stored[False] == [tuple(row) for row in ROWS]
