"""Users, tokens and patients: what the CLI and the API both write."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row, tuple_row

from telehealth.security import check_password, hash_password, new_token, token_digest

Conn = psycopg.AsyncConnection[Any]

#: How long a token lives unless the caller says otherwise (`Settings.token_ttl_s` for the API).
DEFAULT_TOKEN_TTL = timedelta(hours=8)


@dataclass(frozen=True)
class User:
    id: int
    username: str
    role: str
    care_teams: tuple[str, ...]
    patient_id: UUID | None
    #: a researcher's one research project
    project_id: int | None = None
    #: the glucose unit the user chose for the dashboard (None: the deployment's default)
    glucose_unit: str | None = None


def _user(row: dict[str, Any]) -> User:
    return User(
        row["id"],
        row["username"],
        row["role"],
        tuple(row["care_teams"]),
        row["patient_id"],
        row.get("project_id"),
        row.get("glucose_unit"),
    )


_INSERT_USER = """INSERT INTO users (username, password_hash, role, care_teams, patient_id, project_id)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (username) {on_conflict}
RETURNING *"""

#: `add_user`'s answer to an existing username: take the new role, teams and password
_UPSERT = """DO UPDATE
  SET password_hash = COALESCE(EXCLUDED.password_hash, users.password_hash),
      password_changed_at = CASE WHEN EXCLUDED.password_hash IS NULL
                                 THEN users.password_changed_at ELSE now() END,
      role = EXCLUDED.role, care_teams = EXCLUDED.care_teams,
      patient_id = EXCLUDED.patient_id, project_id = EXCLUDED.project_id"""


async def _insert_user(
    conn: Conn,
    on_conflict: str,
    username: str,
    role: str,
    password: str | None,
    care_teams: list[str] | None,
    patient_id: UUID | None,
    project_id: int | None,
) -> tuple[dict[str, Any] | None, bool]:
    """The inserted (or updated) row, if any, and whether a password was set."""
    password_hash = await hash_password(password) if password else None
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            _INSERT_USER.format(on_conflict=on_conflict),  # one of the two clauses above, never input
            (username, password_hash, role, care_teams or [], patient_id, project_id),
        )
        return await cur.fetchone(), password_hash is not None


async def add_user(
    conn: Conn,
    username: str,
    role: str,
    *,
    password: str | None = None,
    care_teams: list[str] | None = None,
    patient_id: UUID | None = None,
    project_id: int | None = None,
) -> User:
    """Create the user, or update role and teams of an existing one (idempotent: the demo's
    `up` and the tests; the admin CLI uses `create_user` and `update_user`).

    A new password revokes the user's existing tokens, as any password change does."""
    row, new_password = await _insert_user(
        conn, _UPSERT, username, role, password, care_teams, patient_id, project_id
    )
    assert row is not None
    if new_password:
        await revoke_user_tokens(conn, row["id"])
    return _user(row)


class UserExists(LookupError):
    """`users add` never changes an existing user: that is `users update`'s explicit job."""


async def create_user(
    conn: Conn,
    username: str,
    role: str,
    *,
    password: str | None = None,
    care_teams: list[str] | None = None,
    patient_id: UUID | None = None,
    project_id: int | None = None,
) -> User:
    """A new user; raises `UserExists` rather than touching one that is already there."""
    row, _ = await _insert_user(
        conn, "DO NOTHING", username, role, password, care_teams, patient_id, project_id
    )
    if row is None:
        raise UserExists(username)
    return _user(row)


async def update_user(
    conn: Conn,
    username: str,
    *,
    role: str | None = None,
    care_teams: list[str] | None = None,
    patient_id: UUID | None = None,
    project_id: int | None = None,
) -> tuple[User, dict[str, tuple[Any, Any]]] | None:
    """Change what is given; returns the user and each changed field as (before, after), or
    None when there is no such user. A change of role revokes the user's tokens: a token must
    never carry rights its holder no longer has."""
    before = await user_by_name(conn, username)
    if before is None:
        return None
    wanted: dict[str, Any] = {
        "role": role,
        "care_teams": tuple(care_teams) if care_teams is not None else None,
        "patient_id": patient_id,
        "project_id": project_id,
    }
    changes = {
        field: (getattr(before, field), value)
        for field, value in wanted.items()
        if value is not None and getattr(before, field) != value
    }
    if not changes:
        return before, {}
    after = {field: new for field, (_, new) in changes.items()}
    if "care_teams" in after:
        after["care_teams"] = list(after["care_teams"])
    assignments = ", ".join(f"{field} = %({field})s" for field in after)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"UPDATE users SET {assignments} WHERE id = %(id)s RETURNING *",  # fields are ours, not input
            {**after, "id": before.id},
        )
        row = await cur.fetchone()
    assert row is not None
    if "role" in changes:
        await revoke_user_tokens(conn, before.id)
    return _user(row), changes


async def patient_exists(conn: Conn, patient_id: UUID) -> bool:
    cur = await conn.execute("SELECT 1 FROM patients WHERE id = %s", (patient_id,))
    return await cur.fetchone() is not None


async def patient_by_nhs_number(conn: Conn, nhs_number: str) -> UUID | None:
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute("SELECT id FROM patients WHERE nhs_number = %s", (nhs_number,))
        row = await cur.fetchone()
    return None if row is None else UUID(str(row[0]))


async def patient_record(conn: Conn, patient_id: UUID) -> dict[str, Any] | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("SELECT * FROM patients WHERE id = %s", (patient_id,))
        return await cur.fetchone()


async def patient_care_team(conn: Conn, patient_id: UUID) -> str | None:
    """The patient's care team; None when there is no such patient."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute("SELECT care_team FROM patients WHERE id = %s", (patient_id,))
        row = await cur.fetchone()
    return None if row is None else str(row[0])


async def issue_token(conn: Conn, user_id: int, *, ttl: timedelta = DEFAULT_TOKEN_TTL) -> str:
    """A new bearer token; only its digest is stored, and it stops working after `ttl`."""
    token = new_token()
    await conn.execute(
        "INSERT INTO api_tokens (token_hash, user_id, expires_at) VALUES (%s, %s, now() + %s)",
        (token_digest(token), user_id, ttl),
    )
    return token


async def revoke_token(conn: Conn, token: str) -> bool:
    cur = await conn.execute(
        "UPDATE api_tokens SET revoked_at = now() WHERE token_hash = %s AND revoked_at IS NULL",
        (token_digest(token),),
    )
    return cur.rowcount > 0


async def revoke_user_tokens(conn: Conn, user_id: int) -> int:
    """Log the user out everywhere; returns how many live tokens were revoked."""
    cur = await conn.execute(
        """UPDATE api_tokens SET revoked_at = now()
           WHERE user_id = %s AND revoked_at IS NULL AND expires_at > now()""",
        (user_id,),
    )
    return cur.rowcount


async def set_password(conn: Conn, user_id: int, password: str) -> int:
    """Change the password and revoke every token of the user; returns tokens revoked."""
    password_hash = await hash_password(password)
    async with conn.transaction():
        await conn.execute(
            "UPDATE users SET password_hash = %s, password_changed_at = now() WHERE id = %s",
            (password_hash, user_id),
        )
        return await revoke_user_tokens(conn, user_id)


async def user_by_name(conn: Conn, username: str) -> User | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("SELECT * FROM users WHERE username = %s", (username,))
        row = await cur.fetchone()
    return _user(row) if row else None


async def user_for_token(conn: Conn, token: str) -> User | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            """SELECT u.* FROM api_tokens t JOIN users u ON u.id = t.user_id
               WHERE t.token_hash = %s AND t.revoked_at IS NULL AND t.expires_at > now()""",
            (token_digest(token),),
        )
        row = await cur.fetchone()
    return _user(row) if row else None


async def authenticate(conn: Conn, username: str, password: str) -> User | None:
    """The user if the password is right. Unknown users cost the same argon2 work as known ones,
    so the answer time does not tell which usernames exist."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("SELECT * FROM users WHERE username = %s", (username,))
        row = await cur.fetchone()
    hashed = row["password_hash"] if row else None
    if not await check_password(password, hashed or None) or row is None:
        return None
    return _user(row)


async def add_patient(
    conn: Conn,
    *,
    nhs_number: str,
    name: str,
    birth_date: date,
    sex: str,
    conditions: list[str],
    care_team: str,
    time_zone: str | None = None,
) -> dict[str, Any]:
    async with conn.cursor(row_factory=dict_row) as cur:
        if time_zone is not None:  # one PostgreSQL knows too, or InvalidParameterValue
            await cur.execute("SELECT now() AT TIME ZONE %s", (time_zone,))
        await cur.execute(
            """INSERT INTO patients (nhs_number, name, birth_date, sex, conditions, care_team, time_zone)
               VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING *""",
            (nhs_number, name, birth_date, sex, conditions, care_team, time_zone),
        )
        row = await cur.fetchone()
    assert row is not None
    return row


async def set_glucose_unit(conn: Conn, user_id: int, unit: str | None) -> None:
    await conn.execute("UPDATE users SET glucose_unit = %s WHERE id = %s", (unit, user_id))


async def patient_time_zone(conn: Conn, patient_id: UUID) -> str | None:
    """The patient's own IANA time zone, or None (the deployment's default applies)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("SELECT time_zone FROM patients WHERE id = %s", (patient_id,))
        row = await cur.fetchone()
    return None if row is None or row["time_zone"] is None else str(row["time_zone"])


async def set_patient_time_zone(conn: Conn, patient_id: UUID, time_zone: str | None) -> None:
    """Set (or with None, clear) the patient's time zone. The name must be one PostgreSQL knows
    too: psycopg.errors.InvalidParameterValue otherwise."""
    if time_zone is not None:
        await conn.execute("SELECT now() AT TIME ZONE %s", (time_zone,))
    await conn.execute("UPDATE patients SET time_zone = %s WHERE id = %s", (time_zone, patient_id))
