"""Consent versions in the database: append-only, each change bumping the consent clock."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row, tuple_row
from psycopg.types.json import Jsonb

from telehealth.consent import ConsentVersion, Provision, Purpose

Conn = psycopg.AsyncConnection[Any]
_COLUMNS = "version, provisions, national_opt_out, recorded_by, recorded_by_role, recorded_at, applies_from"


def _version(row: dict[str, Any]) -> ConsentVersion:
    # Rows were validated when written; constructing without re-validation keeps reading
    # every patient's consent (a release over 10,000 patients) cheap.
    return ConsentVersion.model_construct(
        version=row["version"],
        provisions=[
            Provision.model_construct(purpose=Purpose(p["purpose"]), decision=p["decision"], codes=p["codes"])
            for p in row["provisions"]
        ],
        national_opt_out=row["national_opt_out"],
        recorded_by=row["recorded_by"],
        recorded_by_role=row["recorded_by_role"],
        recorded_at=row["recorded_at"],
        applies_from=row["applies_from"],
    )


async def save_consent(
    conn: Conn,
    patient_id: UUID,
    provisions: list[Provision],
    national_opt_out: bool,
    recorded_by: str,
    recorded_by_role: str,
    applies_from: datetime | None,
) -> ConsentVersion:
    """A new version. The clock update locks its row until commit, so change_seq order is
    commit order and a reader can never see change N+1 without change N."""
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("UPDATE consent_clock SET seq = seq + 1 RETURNING seq")
        clock = await cur.fetchone()
        assert clock is not None
        await cur.execute(
            f"""INSERT INTO patient_consents
                  (patient_id, version, provisions, national_opt_out, recorded_by, recorded_by_role,
                   applies_from, change_seq)
               SELECT %(patient)s, coalesce(max(version), 0) + 1, %(provisions)s, %(opt_out)s,
                      %(by)s, %(role)s, coalesce(%(from)s, now()), %(seq)s
               FROM patient_consents WHERE patient_id = %(patient)s
               RETURNING {_COLUMNS}""",
            {
                "patient": patient_id,
                "provisions": Jsonb([p.model_dump(mode="json") for p in provisions]),
                "opt_out": national_opt_out,
                "by": recorded_by,
                "role": recorded_by_role,
                "from": applies_from,
                "seq": clock["seq"],
            },
        )
        row = await cur.fetchone()
    assert row is not None
    return _version(row)


async def history(conn: Conn, patient_id: UUID) -> list[ConsentVersion]:
    """Every version of one patient, newest first."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {_COLUMNS} FROM patient_consents WHERE patient_id = %s ORDER BY version DESC",
            (patient_id,),
        )
        return [_version(r) for r in await cur.fetchall()]


async def histories(
    conn: Conn, *, after_seq: int = 0, upto_seq: int | None = None, patients: list[UUID] | None = None
) -> dict[UUID, list[ConsentVersion]]:
    """Versions by patient, optionally only changes in (after_seq, upto_seq] or some patients."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"""SELECT patient_id, {_COLUMNS} FROM patient_consents
                WHERE change_seq > %(after)s AND (%(upto)s::bigint IS NULL OR change_seq <= %(upto)s)
                  AND (%(patients)s::uuid[] IS NULL OR patient_id = ANY(%(patients)s))""",
            {"after": after_seq, "upto": upto_seq, "patients": patients},
        )
        out: dict[UUID, list[ConsentVersion]] = defaultdict(list)
        for row in await cur.fetchall():
            out[row["patient_id"]].append(_version(row))
    return dict(out)


async def clock_at(conn: Conn) -> tuple[int, datetime]:
    """The consent clock and `clock_timestamp()`, read by one statement."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("SELECT seq, clock_timestamp() AS at FROM consent_clock")
        row = await cur.fetchone()
    assert row is not None
    return int(row["seq"]), row["at"]


async def clock(conn: Conn) -> int:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("SELECT seq FROM consent_clock")
        row = await cur.fetchone()
    assert row is not None
    return int(row["seq"])


# SKIP LOCKED: processors working off the queue together never take the same observation.
_TAKE = """
DELETE FROM consent_pending WHERE (device_id, seq, code) IN (
    SELECT device_id, seq, code FROM consent_pending LIMIT %s FOR UPDATE SKIP LOCKED)
RETURNING device_id, seq, code, patient_id, measured_at, value, quality, stored_at
"""


async def take_pending(conn: Conn, limit: int) -> list[tuple[Any, ...]]:
    """Take up to `limit` observations waiting for a consent decision off the queue, in the open
    transaction: (device_id, seq, code, patient_id, measured_at, value, quality, stored_at)."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(_TAKE, (limit,))
        return await cur.fetchall()
