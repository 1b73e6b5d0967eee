"""The audit trail: who read or changed which patient's data, why, and when.

Append-only and hash-chained. Every row's `hash` is SHA-256 over the previous row's hash and
this row's canonical content (`Entry.canonical_content`), and row ids run 1, 2, 3, ... without gaps,
so changing, removing or reordering a row breaks the chain at that row. The database refuses
UPDATE, DELETE and TRUNCATE on the table (a trigger), and appends go through the database
function `audit_append()`, which serialises them under an advisory lock of the chain's own, so
the chain stays linear across processes, in one round trip per append.

Use from anywhere that touches patient data::

    await audit.record(conn, actor=user, purpose=audit.purpose_for(user),
                       patient_id=patient_id, action="consent.read", detail={"version": 3})

`record` joins the caller's transaction when there is one, so a change and its audit row
commit (or roll back) together. Work done from the shell or by a job, with no API user,
passes `actor=audit.operator("what")` (recorded with the OS user's name, role `operator`).
`detail` must be JSON (no NaN, no NUL characters); keep free text (notes, names) out of it:
it says *what* was touched, not the data itself.
"""

from __future__ import annotations

import getpass
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID

import psycopg
from psycopg.rows import dict_row, tuple_row
from psycopg.types.json import Jsonb

Conn = psycopg.AsyncConnection[Any]

GENESIS = bytes(32)
_PAGE = 5000

#: The default purpose of use of each role; callers may pass a more specific one.
PURPOSES = {
    "clinician": "direct-care",
    "patient": "self-access",
    "admin": "administration",
    "researcher": "research",
    "operator": "administration",
}


class Actor(Protocol):
    """Who acts: an API user (`telehealth.storage.people.User`) or an `operator(...)`."""

    @property
    def id(self) -> int | None: ...
    @property
    def username(self) -> str: ...
    @property
    def role(self) -> str: ...


@dataclass(frozen=True)
class Operator:
    id: int | None
    username: str
    role: str = "operator"


def operator(tool: str) -> Operator:
    """The actor for shell commands and jobs: e.g. `cli:alice:devices provision`."""
    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = "unknown"
    return Operator(None, f"{tool}:{who}")


def purpose_for(user: Actor) -> str:
    return PURPOSES.get(user.role, "unspecified")


@dataclass(frozen=True)
class Entry:
    """What an audit row says, apart from its id and hashes."""

    at: datetime
    actor_id: int | None
    actor: str
    role: str
    purpose: str
    patient_id: UUID | None
    action: str
    detail: Mapping[str, Any]

    def canonical_content(self, id: int) -> bytes:
        """The exact bytes the row's hash covers: sorted-key compact JSON, UTC microsecond time."""
        before, after = self.canonical_parts()
        return before + str(id).encode() + after

    def canonical_parts(self) -> tuple[bytes, bytes]:
        """The canonical content in two parts, before and after the row's id.

        The id is only known inside the database, under the chain's lock, so the writer sends
        the parts and `audit_append()` hashes `before || id || after`. Sorted keys put `id`
        after action, actor, actor_id, at and detail and before patient_id, purpose and role.
        """
        content: dict[str, Any] = {
            "action": self.action,
            "actor": self.actor,
            "actor_id": self.actor_id,
            "at": self.at.astimezone(UTC).isoformat(timespec="microseconds"),
            "detail": self.detail,
            "patient_id": str(self.patient_id) if self.patient_id is not None else None,
            "purpose": self.purpose,
            "role": self.role,
        }
        head = {k: v for k, v in content.items() if k < "id"}
        tail = {k: v for k, v in content.items() if k > "id"}
        before = _canonical_json(head).removesuffix("}") + ',"id":'
        after = "," + _canonical_json(tail).removeprefix("{")
        return before.encode(), after.encode()

    @classmethod
    def of_row(cls, row: Mapping[str, Any]) -> Entry:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


def _canonical_json(value: Mapping[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def chain_hash(prev_hash: bytes, content: bytes) -> bytes:
    return hashlib.sha256(prev_hash + content).digest()


def _row_hash(prev_hash: bytes, row: Mapping[str, Any]) -> bytes:
    return chain_hash(prev_hash, Entry.of_row(row).canonical_content(row["id"]))


def _clean_detail(detail: Mapping[str, Any] | None) -> dict[str, Any]:
    """Round-trip through canonical JSON so what is stored is exactly what was hashed."""
    text = json.dumps(dict(detail or {}), sort_keys=True, allow_nan=False, default=str)
    if "\\u0000" in text:
        raise ValueError("audit detail must not contain NUL characters")
    cleaned: dict[str, Any] = json.loads(text)
    return cleaned


async def record(
    conn: Conn,
    *,
    actor: Actor,
    purpose: str,
    patient_id: UUID | None,
    action: str,
    detail: Mapping[str, Any] | None = None,
) -> int:
    """Append one audit row; returns its id. Raises if it cannot be written (fail closed)."""
    entry = Entry(
        at=datetime.now(UTC),
        actor_id=actor.id,
        actor=actor.username,
        role=actor.role,
        purpose=purpose,
        patient_id=patient_id,
        action=action,
        detail=_clean_detail(detail),
    )
    before, after = entry.canonical_parts()
    # One statement, so one round trip: the database takes the chain's lock, reads the newest
    # row and inserts the next one (migration 0014_audit_append).
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(
            "SELECT audit_append(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                entry.at,
                entry.actor_id,
                entry.actor,
                entry.role,
                entry.purpose,
                entry.patient_id,
                entry.action,
                Jsonb(entry.detail),
                before,
                after,
            ),
        )
        row = await cur.fetchone()
    if row is None or row[0] is None:
        raise RuntimeError("audit_append returned no id")
    new_id: int = row[0]
    return new_id


@dataclass(frozen=True)
class Head:
    """The newest row: publish `id` and `hash` elsewhere to pin the chain up to here."""

    id: int
    hash: str
    at: datetime | None


async def head(conn: Conn) -> Head:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("SELECT id, hash, at FROM audit_log ORDER BY id DESC LIMIT 1")
        row = await cur.fetchone()
    if row is None:
        return Head(0, GENESIS.hex(), None)
    return Head(row["id"], bytes(row["hash"]).hex(), row["at"])


@dataclass(frozen=True)
class Verification:
    ok: bool
    rows: int
    head: Head
    first_bad_id: int | None = None
    problem: str | None = None


async def verify(conn: Conn, *, expect: tuple[int, str] | None = None) -> Verification:
    """Walk the chain from the first row; stop at the first row that does not check out.

    `expect` is a previously published (id, hash hex): the chain must still contain it, which
    also catches rows cut off the end (something no chain can show on its own).
    """
    prev_id, prev_hash, rows = 0, GENESIS, 0
    last_at: datetime | None = None
    expected_found = expect is None
    while True:
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute("SELECT * FROM audit_log WHERE id > %s ORDER BY id LIMIT %s", (prev_id, _PAGE))
            page = await cur.fetchall()
        if not page:
            break
        for row in page:
            bad = _check(row, prev_id, prev_hash)
            if bad is not None:
                return Verification(False, rows, Head(prev_id, prev_hash.hex(), last_at), *bad)
            prev_id, prev_hash, last_at = row["id"], bytes(row["hash"]), row["at"]
            rows += 1
            if expect is not None and prev_id == expect[0]:
                if prev_hash.hex() != expect[1].lower():
                    return Verification(
                        False,
                        rows,
                        Head(prev_id, prev_hash.hex(), last_at),
                        prev_id,
                        f"row {prev_id} does not have the published hash {expect[1]}",
                    )
                expected_found = True
    final = Head(prev_id, prev_hash.hex(), last_at)
    if not expected_found and expect is not None:
        return Verification(False, rows, final, expect[0], f"published row {expect[0]} is missing")
    return Verification(True, rows, final)


def _check(row: Mapping[str, Any], prev_id: int, prev_hash: bytes) -> tuple[int, str] | None:
    if row["id"] != prev_id + 1:
        return prev_id + 1, f"row {prev_id + 1} is missing (next row is {row['id']})"
    if bytes(row["prev_hash"]) != prev_hash:
        return row["id"], f"row {row['id']} does not link to row {prev_id} (prev_hash differs)"
    if bytes(row["hash"]) != _row_hash(prev_hash, row):
        return row["id"], f"row {row['id']} was altered (its content does not match its hash)"
    return None


async def access_log(
    conn: Conn, patient_id: UUID, *, limit: int = 200, before: int | None = None
) -> list[dict[str, Any]]:
    """Who touched this patient's data, newest first: rows about them and list reads showing them."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            """SELECT id, at, actor, role, purpose, action, detail FROM audit_log
               WHERE (patient_id = %(p)s OR detail -> 'patients' ? %(ps)s)
                 AND (%(before)s::bigint IS NULL OR id < %(before)s)
               ORDER BY id DESC LIMIT %(limit)s""",
            {"p": patient_id, "ps": str(patient_id), "before": before, "limit": limit},
        )
        rows = await cur.fetchall()
    for row in rows:
        # A list read names every patient shown; one patient sees only that they were among them.
        if row["detail"].pop("patients", None) is not None:
            row["detail"]["shown_in_list"] = True
    return rows
