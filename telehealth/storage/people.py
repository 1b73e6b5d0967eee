"""Users, tokens and patients: what the CLI and the API both write."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from telehealth.security import hash_secret, new_token, token_digest, verify_secret

Conn = psycopg.AsyncConnection[Any]


@dataclass(frozen=True)
class User:
    id: int
    username: str
    role: str
    care_teams: tuple[str, ...]
    patient_id: UUID | None
    #: a researcher's one research project
    project_id: int | None = None


def _user(row: dict[str, Any]) -> User:
    return User(
        row["id"],
        row["username"],
        row["role"],
        tuple(row["care_teams"]),
        row["patient_id"],
        row.get("project_id"),
    )


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
    """Create the user, or update role and teams of an existing one (idempotent for demos)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            """INSERT INTO users (username, password_hash, role, care_teams, patient_id, project_id)
               VALUES (%s, %s, %s, %s, %s, %s)
               ON CONFLICT (username) DO UPDATE
                 SET password_hash = COALESCE(EXCLUDED.password_hash, users.password_hash),
                     role = EXCLUDED.role, care_teams = EXCLUDED.care_teams,
                     patient_id = EXCLUDED.patient_id, project_id = EXCLUDED.project_id
               RETURNING *""",
            (
                username,
                hash_secret(password) if password else None,
                role,
                care_teams or [],
                patient_id,
                project_id,
            ),
        )
        row = await cur.fetchone()
    assert row is not None
    return _user(row)


async def issue_token(conn: Conn, user_id: int) -> str:
    token = new_token()
    await conn.execute(
        "INSERT INTO api_tokens (token_hash, user_id) VALUES (%s, %s)", (token_digest(token), user_id)
    )
    return token


async def user_for_token(conn: Conn, token: str) -> User | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            """SELECT u.* FROM api_tokens t JOIN users u ON u.id = t.user_id
               WHERE t.token_hash = %s AND (t.expires_at IS NULL OR t.expires_at > now())""",
            (token_digest(token),),
        )
        row = await cur.fetchone()
    return _user(row) if row else None


async def authenticate(conn: Conn, username: str, password: str) -> User | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("SELECT * FROM users WHERE username = %s", (username,))
        row = await cur.fetchone()
    if row is None or not row["password_hash"] or not verify_secret(password, row["password_hash"]):
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
) -> dict[str, Any]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            """INSERT INTO patients (nhs_number, name, birth_date, sex, conditions, care_team)
               VALUES (%s, %s, %s, %s, %s, %s) RETURNING *""",
            (nhs_number, name, birth_date, sex, conditions, care_team),
        )
        row = await cur.fetchone()
    assert row is not None
    return row
