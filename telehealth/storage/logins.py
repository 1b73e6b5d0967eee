"""Login throttling: count failed logins per key and lock the key out for a while.

Keys are `user:<username>` (guessing one account's password) and `addr:<client address>`
(trying many accounts from one place). Counts live in the database so every API process
shares them. Unknown usernames are counted like known ones, so a lockout says nothing about
whether an account exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg

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


async def locked_for(conn: Conn, keys: list[str]) -> float:
    """Seconds until every key is unlocked; 0 when none is locked."""
    cur = await conn.execute(
        """SELECT coalesce(max(extract(epoch FROM locked_until - now())), 0)::float AS wait
           FROM login_throttle WHERE key = ANY(%s) AND locked_until > now()""",
        (keys,),
    )
    row = await cur.fetchone()
    return float(row["wait"]) if row else 0.0


async def record_failure(conn: Conn, key: str, policy: Policy) -> float:
    """Count one failure; at the limit, lock the key and start a new window. Returns the lock
    in seconds (0 when not locked)."""
    async with conn.transaction():
        cur = await conn.execute(
            """INSERT INTO login_throttle AS t (key, failures, window_start) VALUES (%(k)s, 1, now())
               ON CONFLICT (key) DO UPDATE SET
                 failures = CASE WHEN t.window_start < now() - %(window)s THEN 1 ELSE t.failures + 1 END,
                 window_start = CASE WHEN t.window_start < now() - %(window)s THEN now()
                                     ELSE t.window_start END
               RETURNING failures""",
            {"k": key, "window": policy.window},
        )
        row = await cur.fetchone()
        assert row is not None
        if row["failures"] < policy.max_failures:
            return 0.0
        await conn.execute(
            """UPDATE login_throttle SET locked_until = now() + %s, failures = 0, window_start = now()
               WHERE key = %s""",
            (policy.lockout, key),
        )
        # Old entries only matter while their window or lock lasts; keep the table small.
        await conn.execute(
            """DELETE FROM login_throttle
               WHERE window_start < now() - interval '1 day'
                 AND (locked_until IS NULL OR locked_until < now())"""
        )
    return policy.lockout.total_seconds()


async def clear(conn: Conn, key: str) -> None:
    """A successful login forgets the account's earlier failures (not the address's)."""
    await conn.execute("DELETE FROM login_throttle WHERE key = %s", (key,))
