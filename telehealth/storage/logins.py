"""Login throttling: count login attempts per key and lock the key out for a while.

Keys are `user:<username>` (guessing one account's password) and `addr:<client address>`
(trying many accounts from one place). Counts live in the database so every API process
shares them. Unknown usernames are counted like known ones, so a lockout says nothing about
whether an account exists.

An attempt is counted *before* its password is checked (and forgiven when it succeeds), so a
burst of parallel guesses cannot all slip in before the first failure is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg
from psycopg.rows import tuple_row

Conn = psycopg.AsyncConnection[Any]


@dataclass(frozen=True)
class Policy:
    max_failures: int
    window: timedelta
    lockout: timedelta


def user_key(username: str) -> str:
    return f"user:{username}"


def address_key(address: str) -> str:
    return f"addr:{address}"


# One statement, so concurrent attempts on one key are counted one after another (the
# conflicting row is locked). Old values on the right: a lock that has run out, or a window
# that has passed, starts a new window; the attempt beyond the limit locks the key.
_ATTEMPT = """
INSERT INTO login_throttle AS t (key, failures, window_start) VALUES (%(k)s, 1, now())
ON CONFLICT (key) DO UPDATE SET
  failures = CASE WHEN t.locked_until > now() THEN t.failures
                  WHEN t.locked_until IS NOT NULL OR t.window_start < now() - %(window)s THEN 1
                  ELSE t.failures + 1 END,
  window_start = CASE WHEN t.locked_until > now() THEN t.window_start
                      WHEN t.locked_until IS NOT NULL OR t.window_start < now() - %(window)s THEN now()
                      ELSE t.window_start END,
  locked_until = CASE WHEN t.locked_until > now() THEN t.locked_until
                      WHEN t.locked_until IS NOT NULL OR t.window_start < now() - %(window)s THEN NULL
                      WHEN t.failures + 1 > %(max)s THEN now() + %(lockout)s
                      ELSE NULL END
RETURNING coalesce(extract(epoch FROM locked_until - now()), 0)::float AS wait
"""


async def locked_for(conn: Conn, key: str) -> float | None:
    """The seconds this key stays locked, or None when it is not locked (a read, no write)."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(
            """SELECT extract(epoch FROM locked_until - now())::float AS wait FROM login_throttle
               WHERE key = %s AND locked_until > now()""",
            (key,),
        )
        row = await cur.fetchone()
    return None if row is None else float(row[0])


async def attempt(conn: Conn, key: str, policy: Policy) -> float:
    """Count one attempt. Returns 0 when it may go ahead, else the seconds the key stays locked."""
    cur = await conn.execute(
        _ATTEMPT,
        {"k": key, "window": policy.window, "max": policy.max_failures, "lockout": policy.lockout},
    )
    row = await cur.fetchone()
    assert row is not None
    return max(0.0, float(row["wait"]))


async def succeeded(conn: Conn, key: str, *, forget: bool) -> None:
    """A successful login: forget the account's failures (`forget`), or just do not count this
    attempt against the key (an address shared by many users)."""
    if forget:
        await conn.execute("DELETE FROM login_throttle WHERE key = %s", (key,))
    else:
        await conn.execute(
            """UPDATE login_throttle SET failures = greatest(failures - 1, 0)
               WHERE key = %s AND locked_until IS NULL""",
            (key,),
        )


async def prune(conn: Conn) -> None:
    """Entries matter only while their window or lock lasts; keep the table small."""
    await conn.execute(
        """DELETE FROM login_throttle
           WHERE window_start < now() - interval '1 day' AND (locked_until IS NULL OR locked_until < now())"""
    )
