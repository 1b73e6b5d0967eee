"""Research releases as the public register and the patient's data-uses page read them."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row


async def all_releases(conn: psycopg.AsyncConnection[Any]) -> list[dict[str, Any]]:
    """Every release, oldest first: what, when, how many patients (rounded), epsilon spent."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            """SELECT id, project_id, kind, code, bucket_seconds, group_by, period_start, period_end,
                      cells, patients_rounded, epsilon, released_at
               FROM research_releases ORDER BY released_at, id"""
        )
        return await cur.fetchall()


async def releases_of(
    conn: psycopg.AsyncConnection[Any], pseudonym: str, project_id: int
) -> list[dict[str, Any]]:
    """The releases of one project that this pseudonym contributed to, with the consent version
    that permitted it."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            """SELECT r.id AS release_id, r.kind, r.code, r.bucket_seconds, r.group_by, r.period_start,
                      r.period_end, r.released_at, r.epsilon, c.consent_version
               FROM release_contributors c JOIN research_releases r ON r.id = c.release_id
               WHERE c.pseudonym = %s AND r.project_id = %s ORDER BY r.released_at""",
            (pseudonym, project_id),
        )
        return await cur.fetchall()
