"""Consent versions in the database: append-only, each change bumping the consent clock."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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


_PAIRS = """
SELECT DISTINCT patient_id, code FROM (SELECT patient_id, code FROM consent_pending LIMIT %s) AS q
"""

# One statement takes the queued observations of the decided (patient, code) pairs, writes
# each one's decision and its research rows, and reports counts: the decisions are made per
# pair in Python (`telehealth.consent`), and no observation row travels to the processor and
# back. SKIP LOCKED: processors working off the queue together never take the same one.
# No joins: the decisions and ranges are looked up by key in jsonb, and the taken rows are
# deleted by their ctid (locked, so it cannot move), so the step stays linear in what it
# takes whatever the planner believes. The queue churns too fast for its statistics: planned
# on an estimate of one queued row, a delete joined to the decisions re-ran its locking
# subquery per queued row and timed out at 5 s with 986 rows queued. `_BY_TID` makes the
# delete a TID scan even when the statistics say the queue is empty (a sequential scan testing
# each row against every taken ctid would be quadratic again).
_BY_TID = "SELECT set_config('enable_seqscan', 'off', true)"
_DECIDE = """
WITH locked AS MATERIALIZED (
    SELECT p.ctid AS id FROM consent_pending p
    WHERE %(decisions)s::jsonb ? (p.patient_id::text || ' ' || p.code)
    LIMIT %(limit)s FOR UPDATE OF p SKIP LOCKED
), taken AS (
    DELETE FROM consent_pending c WHERE c.ctid = ANY (ARRAY(SELECT id FROM locked))
    RETURNING c.device_id, c.seq, c.code, c.patient_id, c.measured_at, c.value, c.quality, c.stored_at,
              %(decisions)s::jsonb -> (c.patient_id::text || ' ' || c.code) AS decision
), decided AS (
    INSERT INTO reading_consent
        (device_id, seq, code, patient_id, measured_at, consent_version, eligible, decided_at)
    SELECT device_id, seq, code, patient_id, measured_at, (decision ->> 0)::int,
           string_to_array(decision ->> 1, ','), %(at)s
    FROM taken
    RETURNING 1
), research AS (
    INSERT INTO research_readings (purpose, code, patient_id, measured_at, value, consent_version)
    SELECT p.purpose, t.code, t.patient_id, t.measured_at,
           least(greatest(t.value, (%(plausible)s::jsonb -> t.code ->> 0)::float8),
                 (%(plausible)s::jsonb -> t.code ->> 1)::float8),
           (t.decision ->> 0)::int
    FROM taken t CROSS JOIN LATERAL unnest(string_to_array(t.decision ->> 1, ',')) AS p(purpose)
    WHERE NOT t.quality && ARRAY['implausible', 'future']::text[]
    RETURNING purpose
)
SELECT 'decided', count(*), NULL::float8 FROM decided
UNION ALL SELECT 'research:' || purpose, count(*), NULL FROM research GROUP BY purpose
UNION ALL SELECT 'waited', count(*), extract(epoch FROM %(at)s - stored_at)::float8
    FROM taken GROUP BY stored_at
"""


@dataclass(frozen=True)
class Decision:
    """Eligibility of every queued observation of one patient and code, as decided."""

    patient_id: UUID
    code: str
    version: int | None
    purposes: list[str]


@dataclass
class Decided:
    """What one `decide_pending` did: observations decided, research rows per purpose, and how
    long the observations had waited (seconds), with how many waited that long."""

    observations: int = 0
    research: dict[str, int] = field(default_factory=dict)
    waits: list[tuple[float, int]] = field(default_factory=list)


async def pending_pairs(conn: Conn, limit: int) -> list[tuple[UUID, str]]:
    """The (patient, code) pairs among up to `limit` queued observations: what to decide."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(_PAIRS, (limit,))
        return [(row[0], row[1]) for row in await cur.fetchall()]


async def decide_pending(
    conn: Conn,
    decisions: Sequence[Decision],
    at: datetime,
    limit: int,
    plausible: Mapping[str, tuple[float, float]],
) -> Decided:
    """In the open transaction, take up to `limit` queued observations of the decided pairs off
    the queue, record each one's decision as of `at` (`reading_consent`), and copy the clean
    ones (no `implausible` or `future` flag) for each eligible purpose into `research_readings`,
    their value clamped to the code's `plausible` range."""
    by_key = {f"{d.patient_id} {d.code}": [d.version, ",".join(d.purposes)] for d in decisions}
    params = {
        "decisions": Jsonb(by_key),
        "limit": limit,
        "at": at,
        "plausible": Jsonb({code: [low, high] for code, (low, high) in plausible.items()}),
    }
    done = Decided()
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(_BY_TID)  # for the rest of the step's transaction only
        await cur.execute(_DECIDE, params)
        for kind, n, waited in await cur.fetchall():
            if kind == "decided":
                done.observations = int(n)
            elif kind == "waited":
                done.waits.append((max(0.0, float(waited)), int(n)))
            else:
                done.research[kind.removeprefix("research:")] = int(n)
    return done
