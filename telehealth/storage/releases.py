"""Research releases as the public register and the patient's data-uses page read them."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row, tuple_row


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


# ---- writing a release (`telehealth.research.release` decides what; these store it) ----------


async def lock_project(conn: psycopg.AsyncConnection[Any], lock_class: int, project_id: int) -> None:
    """Serialise releases of one project until the transaction ends."""
    await conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (lock_class, project_id))


async def frozen_cells(
    conn: psycopg.AsyncConnection[Any],
    project_id: int,
    code: str,
    bucket_seconds: int,
    group_by: str,
    start: datetime,
    end: datetime,
) -> list[dict[str, Any]]:
    """The bodies of cells already released for buckets starting in [start, end)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            """SELECT body FROM research_cells
               WHERE project_id = %s AND code = %s AND bucket_seconds = %s AND group_by = %s
                 AND bucket_start >= %s AND bucket_start < %s""",
            (project_id, code, bucket_seconds, group_by, start, end),
        )
        return [r["body"] for r in await cur.fetchall()]


async def epsilon_spent(conn: psycopg.AsyncConnection[Any], project_id: int) -> float:
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(
            "SELECT coalesce(sum(epsilon), 0) AS spent FROM epsilon_ledger WHERE project_id = %s",
            (project_id,),
        )
        row = await cur.fetchone()
    assert row is not None
    return float(row[0])


async def charge_patients(
    conn: psycopg.AsyncConnection[Any], patients: list[UUID], epsilon: float
) -> list[float]:
    """Add `epsilon` to each patient's spend across projects; returns the new totals."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(
            """INSERT INTO patient_epsilon AS e (patient_id, spent)
               SELECT unnest(%s::uuid[]), %s
               ON CONFLICT (patient_id) DO UPDATE SET spent = e.spent + EXCLUDED.spent
               RETURNING spent""",
            (patients, epsilon),
        )
        return [float(r[0]) for r in await cur.fetchall()]


async def record_epsilon(
    conn: psycopg.AsyncConnection[Any], project_id: int, release_id: int, epsilon: float
) -> None:
    await conn.execute(
        "INSERT INTO epsilon_ledger (project_id, release_id, epsilon) VALUES (%s, %s, %s)",
        (project_id, release_id, epsilon),
    )


async def insert_release(conn: psycopg.AsyncConnection[Any], values: tuple[Any, ...]) -> int:
    """(project_id, kind, code, bucket_seconds, group_by, period_start, period_end, cells,
    patients_rounded, epsilon, released_to); returns the release's id."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(
            """INSERT INTO research_releases (project_id, kind, code, bucket_seconds, group_by, period_start,
                   period_end, cells, patients_rounded, epsilon, released_to)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id""",
            values,
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def copy_cells(conn: psycopg.AsyncConnection[Any], rows: Iterable[tuple[Any, ...]]) -> None:
    """(project_id, code, bucket_seconds, group_by, bucket_start, grp, body, release_id) rows."""
    async with (
        conn.cursor() as c,
        c.copy(
            "COPY research_cells (project_id, code, bucket_seconds, group_by, bucket_start, grp, body,"
            " release_id) FROM STDIN"
        ) as copy,
    ):
        for row in rows:
            await copy.write_row(row)
