"""The `research_projects` table, and the cohort a project's definition selects from `patients`
(the models and their rules: `telehealth.research.projects`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

Conn = psycopg.AsyncConnection[Any]


async def insert_project(conn: Conn, values: tuple[Any, ...]) -> dict[str, Any]:
    """(slug, title, owner, purpose, codes, cohort, starts_on, ends_on, bucket_hours,
    epsilon_per_release, epsilon_budget, pseudonym_key, created_by); returns the stored row."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            """INSERT INTO research_projects (slug, title, owner, purpose, codes, cohort, starts_on, ends_on,
                   bucket_hours, epsilon_per_release, epsilon_budget, pseudonym_key, created_by)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING *""",
            values,
        )
        row = await cur.fetchone()
    assert row is not None
    return row


async def project_row(conn: Conn, project_id: int) -> dict[str, Any] | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("SELECT * FROM research_projects WHERE id = %s", (project_id,))
        return await cur.fetchone()


async def project_rows(conn: Conn) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("SELECT * FROM research_projects ORDER BY id")
        return await cur.fetchall()


async def cohort_patient_ids(
    conn: Conn,
    *,
    sex: Sequence[str],
    conditions: Sequence[str],
    age_min: int | None,
    age_max: int | None,
    at: date,
) -> list[UUID]:
    """Patients of any of these sexes and conditions (empty: any), aged within the bounds on `at`."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            """SELECT id FROM patients
               WHERE (cardinality(%(sex)s::text[]) = 0 OR sex = ANY(%(sex)s))
                 AND (cardinality(%(cond)s::text[]) = 0 OR conditions && %(cond)s)
                 AND (%(age_min)s::int IS NULL
                      OR date_part('year', age(%(at)s, birth_date)) >= %(age_min)s)
                 AND (%(age_max)s::int IS NULL
                      OR date_part('year', age(%(at)s, birth_date)) <= %(age_max)s)""",
            {"sex": sex, "cond": conditions, "age_min": age_min, "age_max": age_max, "at": at},
        )
        return [r["id"] for r in await cur.fetchall()]
