"""A patient's treatments: stored once per client identifier, read by time, by filters the
Nightscout apps send, and by modification time (API v3's history sync)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from telehealth.treatments import Treatment, public_id, served

#: Nightscout field names with a column of their own; any other field is read from the document
_COLUMNS = {"eventType": "event_type", "enteredBy": "entered_by", "notes": "notes"}
_EXISTS_COLUMNS = {"carbs": "carbs_g", "insulin": "insulin_u", "duration": "duration_min"}


@dataclass
class TreatmentQuery:
    count: int = 100
    since: datetime | None = None  # created_at, inclusive
    after: datetime | None = None  # exclusive
    until: datetime | None = None  # inclusive
    before: datetime | None = None  # exclusive
    equal: list[tuple[str, str]] = field(default_factory=list)
    not_equal: list[tuple[str, str]] = field(default_factory=list)
    exists: list[tuple[str, bool]] = field(default_factory=list)
    #: API v3 history: modified after this (exclusive), oldest change first, deletions included
    modified_after: datetime | None = None
    ascending: bool = False


@dataclass(frozen=True)
class Stored:
    identifier: str
    created: bool  # False: the identifier was stored before (a re-upload)
    document: dict[str, Any]
    srv_modified: datetime


_RETURNING = "identifier, created_at, document, srv_created, srv_modified, is_valid"


def _served(row: dict[str, Any]) -> dict[str, Any]:
    return served(
        row["identifier"],
        row["created_at"],
        row["document"],
        srv_created=row["srv_created"],
        srv_modified=row["srv_modified"],
        is_valid=row["is_valid"],
    )


def _values(t: Treatment) -> dict[str, Any]:
    return {
        "identifier": t.identifier,
        "public_id": public_id(t.identifier),
        "event_type": t.event_type,
        "created_at": t.created_at,
        "carbs_g": t.carbs_g,
        "insulin_u": t.insulin_u,
        "basal_u_per_h": t.basal_u_per_h,
        "duration_min": t.duration_min,
        "notes": t.notes,
        "entered_by": t.entered_by,
        "document": Jsonb(t.document),
    }


async def store(
    conn: psycopg.AsyncConnection[Any], patient_id: UUID, device_id: str, treatment: Treatment
) -> Stored:
    """Insert the treatment unless the patient has one with its identifier; either way the
    stored one is answered (a re-upload keeps the first version, as entries do)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"""INSERT INTO treatments (patient_id, device_id, identifier, public_id, event_type, created_at,
                   carbs_g, insulin_u, basal_u_per_h, duration_min, notes, entered_by, document)
               VALUES (%(p)s, %(d)s, %(identifier)s, %(public_id)s, %(event_type)s, %(created_at)s,
                   %(carbs_g)s, %(insulin_u)s, %(basal_u_per_h)s, %(duration_min)s, %(notes)s,
                   %(entered_by)s, %(document)s)
               ON CONFLICT (patient_id, identifier) DO NOTHING
               RETURNING {_RETURNING}""",
            {"p": patient_id, "d": device_id, **_values(treatment)},
        )
        row = await cur.fetchone()
        created = row is not None
        if row is None:
            await cur.execute(
                f"SELECT {_RETURNING} FROM treatments WHERE patient_id = %s AND identifier = %s",
                (patient_id, treatment.identifier),
            )
            row = await cur.fetchone()
    assert row is not None
    return Stored(row["identifier"], created, _served(row), row["srv_modified"])


async def update(
    conn: psycopg.AsyncConnection[Any], patient_id: UUID, device_id: str, treatment: Treatment
) -> Stored | None:
    """Replace the stored treatment with this identifier (None: the patient has none)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"""UPDATE treatments SET device_id = %(d)s, event_type = %(event_type)s,
                   created_at = %(created_at)s, carbs_g = %(carbs_g)s, insulin_u = %(insulin_u)s,
                   basal_u_per_h = %(basal_u_per_h)s, duration_min = %(duration_min)s, notes = %(notes)s,
                   entered_by = %(entered_by)s, document = %(document)s, is_valid = true,
                   srv_modified = clock_timestamp()
               WHERE patient_id = %(p)s AND identifier = %(identifier)s
               RETURNING {_RETURNING}""",
            {"p": patient_id, "d": device_id, **_values(treatment)},
        )
        row = await cur.fetchone()
    return None if row is None else Stored(row["identifier"], False, _served(row), row["srv_modified"])


async def find_identifier(conn: psycopg.AsyncConnection[Any], patient_id: UUID, wanted: str) -> str | None:
    """The stored identifier a client names by it or by the `_id` it was served."""
    cur = await conn.execute(
        """SELECT identifier FROM treatments WHERE patient_id = %s AND (identifier = %s OR public_id = %s)
           ORDER BY identifier = %s DESC LIMIT 1""",
        (patient_id, wanted, wanted, wanted),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    return str(row["identifier"] if isinstance(row, dict) else row[0])


async def read_one(
    conn: psycopg.AsyncConnection[Any], patient_id: UUID, identifier: str
) -> dict[str, Any] | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {_RETURNING} FROM treatments WHERE patient_id = %s AND identifier = %s",
            (patient_id, identifier),
        )
        row = await cur.fetchone()
    return None if row is None else _served(row)


async def delete(conn: psycopg.AsyncConnection[Any], patient_id: UUID, identifiers: Sequence[str]) -> int:
    """Mark deleted (kept, so that history sync hands the deletion on); how many were."""
    cur = await conn.execute(
        """UPDATE treatments SET is_valid = false, srv_modified = clock_timestamp()
           WHERE patient_id = %s AND identifier = ANY(%s) AND is_valid""",
        (patient_id, list(identifiers)),
    )
    return cur.rowcount


def _field(name: str) -> tuple[str, list[Any]]:
    column = _COLUMNS.get(name)
    if column is not None:
        return column, []
    return "(document ->> %s)", [name]


async def query(
    conn: psycopg.AsyncConnection[Any], patient_id: UUID, q: TreatmentQuery
) -> list[dict[str, Any]]:
    """Newest first by `created_at` (or, for history, oldest change first), deleted ones only
    in history. Field names come from the caller's parsed filters and are passed as values."""
    where = ["patient_id = %s"]
    args: list[Any] = [patient_id]
    for op, value in (("<=", q.until), ("<", q.before), (">=", q.since), (">", q.after)):
        if value is not None:
            where.append(f"created_at {op} %s")
            args.append(value)
    for name, text in q.equal:
        sql, extra = _field(name)
        where.append(f"{sql} = %s")
        args += [*extra, text]
    for name, text in q.not_equal:
        sql, extra = _field(name)
        where.append(f"{sql} IS DISTINCT FROM %s")
        args += [*extra, text]
    for name, wanted in q.exists:
        column = _EXISTS_COLUMNS.get(name)
        if column is not None:
            where.append(f"{column} IS {'NOT ' if wanted else ''}NULL")
        else:
            where.append(
                f"{'' if wanted else 'NOT '}coalesce(jsonb_typeof(document -> %s), 'null') <> 'null'"
            )
            args.append(name)
    if q.modified_after is not None:
        where.append("srv_modified > %s")
        args.append(q.modified_after)
        order = "srv_modified, id"
    else:
        where.append("is_valid")
        order = "created_at, id" if q.ascending else "created_at DESC, id DESC"
    args.append(q.count)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {_RETURNING} FROM treatments WHERE {' AND '.join(where)} ORDER BY {order} LIMIT %s",
            args,
        )
        rows = await cur.fetchall()
    return [_served(row) for row in rows]


async def last_modified(conn: psycopg.AsyncConnection[Any], patient_id: UUID) -> datetime | None:
    cur = await conn.execute(
        "SELECT max(srv_modified) AS m FROM treatments WHERE patient_id = %s", (patient_id,)
    )
    row = await cur.fetchone()
    if row is None:
        return None
    value = row["m"] if isinstance(row, dict) else row[0]
    return value if isinstance(value, datetime) else None


async def for_clinician(
    conn: psycopg.AsyncConnection[Any], patient_id: UUID, start: datetime, end: datetime, limit: int
) -> list[dict[str, Any]]:
    """The columns a clinician reads, oldest first, in [start, end)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            """SELECT t.identifier, t.event_type, t.created_at, t.carbs_g, t.insulin_u, t.basal_u_per_h,
                      t.duration_min, t.notes, t.entered_by, t.device_id, t.srv_modified
               FROM treatments t
               WHERE t.patient_id = %s AND t.is_valid AND t.created_at >= %s AND t.created_at < %s
               ORDER BY t.created_at, t.id LIMIT %s""",
            (patient_id, start, end, limit),
        )
        return list(await cur.fetchall())
