"""Nightscout documents that are neither readings nor treatments (devicestatus, profile, food,
settings), kept per patient as uploaded, by the client's identifier, so that the apps find
what they stored. Devicestatus is kept 30 days (a loop posts one every 5 minutes)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from telehealth.treatments import public_id

COLLECTIONS = ("devicestatus", "profile", "food", "settings")
DEVICESTATUS_KEPT = timedelta(days=30)
_COLUMNS = "identifier, date, document, srv_created, srv_modified, is_valid"


@dataclass(frozen=True)
class Stored:
    identifier: str
    created: bool
    document: dict[str, Any]
    srv_modified: datetime


def _ms(at: datetime) -> int:
    return round(at.timestamp() * 1000)


def served(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row["document"])
    out.update(
        _id=public_id(row["identifier"]),
        identifier=row["identifier"],
        srvCreated=_ms(row["srv_created"]),
        srvModified=_ms(row["srv_modified"]),
    )
    out.setdefault("date", _ms(row["date"]))
    out.setdefault("created_at", row["date"].isoformat(timespec="milliseconds").replace("+00:00", "Z"))
    if not row["is_valid"]:
        out["isValid"] = False
    return out


async def store(
    conn: psycopg.AsyncConnection[Any],
    patient_id: UUID,
    device_id: str,
    collection: str,
    identifier: str,
    date: datetime,
    document: dict[str, Any],
) -> Stored:
    """Insert unless the patient has this identifier in the collection; answer the stored one."""
    async with conn.cursor(row_factory=dict_row) as cur:
        if collection == "devicestatus":
            await cur.execute(
                """DELETE FROM nightscout_documents
                   WHERE patient_id = %s AND collection = 'devicestatus' AND date < now() - %s""",
                (patient_id, DEVICESTATUS_KEPT),
            )
        await cur.execute(
            f"""INSERT INTO nightscout_documents
                   (patient_id, device_id, collection, identifier, date, document)
               VALUES (%s, %s, %s, %s, %s, %s)
               ON CONFLICT (patient_id, collection, identifier) DO NOTHING RETURNING {_COLUMNS}""",
            (patient_id, device_id, collection, identifier, date, Jsonb(document)),
        )
        row = await cur.fetchone()
        created = row is not None
        if row is None:
            await cur.execute(
                f"""SELECT {_COLUMNS} FROM nightscout_documents
                   WHERE patient_id = %s AND collection = %s AND identifier = %s""",
                (patient_id, collection, identifier),
            )
            row = await cur.fetchone()
    assert row is not None
    return Stored(row["identifier"], created, served(row), row["srv_modified"])


async def patch(
    conn: psycopg.AsyncConnection[Any],
    patient_id: UUID,
    collection: str,
    identifier: str,
    changes: dict[str, Any],
) -> Stored | None:
    """Merge the changed fields into the stored document (API v3 PATCH)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"""UPDATE nightscout_documents SET document = document || %s, srv_modified = clock_timestamp()
               WHERE patient_id = %s AND collection = %s AND identifier = %s AND is_valid
               RETURNING {_COLUMNS}""",
            (Jsonb(changes), patient_id, collection, identifier),
        )
        row = await cur.fetchone()
    return None if row is None else Stored(row["identifier"], False, served(row), row["srv_modified"])


async def delete(
    conn: psycopg.AsyncConnection[Any], patient_id: UUID, collection: str, identifier: str
) -> int:
    cur = await conn.execute(
        """UPDATE nightscout_documents SET is_valid = false, srv_modified = clock_timestamp()
           WHERE patient_id = %s AND collection = %s AND identifier = %s AND is_valid""",
        (patient_id, collection, identifier),
    )
    return cur.rowcount


async def read_one(
    conn: psycopg.AsyncConnection[Any], patient_id: UUID, collection: str, identifier: str
) -> dict[str, Any] | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"""SELECT {_COLUMNS} FROM nightscout_documents
               WHERE patient_id = %s AND collection = %s AND (identifier = %s) AND is_valid""",
            (patient_id, collection, identifier),
        )
        row = await cur.fetchone()
    return None if row is None else served(row)


async def search(
    conn: psycopg.AsyncConnection[Any],
    patient_id: UUID,
    collection: str,
    *,
    limit: int,
    after: datetime | None = None,
    before: datetime | None = None,
    ascending: bool = False,
) -> list[dict[str, Any]]:
    """By the document's own time (`date`/`created_at`), newest first unless `ascending`."""
    order = "date, id" if ascending else "date DESC, id DESC"
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"""SELECT {_COLUMNS} FROM nightscout_documents
               WHERE patient_id = %s AND collection = %s AND is_valid
                 AND (%s::timestamptz IS NULL OR date > %s) AND (%s::timestamptz IS NULL OR date < %s)
               ORDER BY {order} LIMIT %s""",
            (patient_id, collection, after, after, before, before, limit),
        )
        return [served(row) for row in await cur.fetchall()]


async def history(
    conn: psycopg.AsyncConnection[Any], patient_id: UUID, collection: str, since: datetime, limit: int
) -> list[dict[str, Any]]:
    """Changed after `since` (deletions included), oldest change first: API v3 history."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"""SELECT {_COLUMNS} FROM nightscout_documents
               WHERE patient_id = %s AND collection = %s AND srv_modified > %s
               ORDER BY srv_modified, id LIMIT %s""",
            (patient_id, collection, since, limit),
        )
        return [served(row) for row in await cur.fetchall()]


async def last_modified(conn: psycopg.AsyncConnection[Any], patient_id: UUID) -> dict[str, datetime]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            """SELECT collection, max(srv_modified) AS m FROM nightscout_documents
               WHERE patient_id = %s GROUP BY collection""",
            (patient_id,),
        )
        return {row["collection"]: row["m"] for row in await cur.fetchall()}
