"""Versioned per-patient alert thresholds: each save is a new version, the newest in force."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from telehealth.thresholds import Thresholds


async def save_thresholds(
    conn: psycopg.AsyncConnection[Any], patient_id: UUID, thresholds: Thresholds, changed_by: str
) -> dict[str, Any]:
    """The new version's number, author and time; a concurrent save raises UniqueViolation."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            """INSERT INTO patient_thresholds (patient_id, version, settings, changed_by)
               SELECT %s, coalesce(max(version), 0) + 1, %s, %s
               FROM patient_thresholds WHERE patient_id = %s
               RETURNING version, changed_by, changed_at""",
            (patient_id, Jsonb(thresholds.model_dump()), changed_by, patient_id),
        )
        row = await cur.fetchone()
    assert row is not None
    return row


async def threshold_history(conn: psycopg.AsyncConnection[Any], patient_id: UUID) -> list[dict[str, Any]]:
    """Every saved version, newest first."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            """SELECT version, settings, changed_by, changed_at FROM patient_thresholds
               WHERE patient_id = %s ORDER BY version DESC""",
            (patient_id,),
        )
        return await cur.fetchall()
