"""Versioned migrations: `NNNN_name.sql`, plus `NNNN_name.timescale.sql` when TimescaleDB is there.

Each version is applied once, in order, in its own transaction, under an advisory lock so
that services starting together do not race.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources

import psycopg

log = logging.getLogger(__name__)
_LOCK_KEY = 7_301_942


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str
    timescale_sql: str | None


def available() -> list[Migration]:
    folder = resources.files("telehealth.storage") / "migrations"
    files = {f.name: f.read_text() for f in folder.iterdir() if f.name.endswith(".sql")}
    found = []
    for filename in sorted(files):
        if filename.endswith(".timescale.sql"):
            continue
        stem = filename.removesuffix(".sql")
        version, _, name = stem.partition("_")
        found.append(Migration(int(version), name, files[filename], files.get(f"{stem}.timescale.sql")))
    return found


def _timescale_available(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    row = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
    return row is not None


def migrate(url: str, *, retention: str = "2 years") -> list[str]:
    """Apply pending migrations; returns the names applied. Safe to run repeatedly."""
    applied: list[str] = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       version integer PRIMARY KEY,
                       name text NOT NULL,
                       timescale boolean NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            timescale = _timescale_available(conn)
            for migration in available():
                if migration.version in done:
                    continue
                with conn.transaction():
                    conn.execute(migration.sql.encode())
                    if timescale and migration.timescale_sql:
                        conn.execute(migration.timescale_sql.encode())
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name, timescale) VALUES (%s, %s, %s)",
                        (migration.version, migration.name, timescale),
                    )
                applied.append(f"{migration.version:04d}_{migration.name}")
                log.info(
                    "applied migration %04d_%s (timescale=%s)", migration.version, migration.name, timescale
                )
            if timescale:
                _apply_retention(conn, retention)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied


def _apply_retention(conn: psycopg.Connection[tuple[object, ...]], retention: str) -> None:
    """Retention is a setting, so it is (re)applied on every migrate rather than frozen in SQL."""
    with conn.transaction():
        conn.execute("SELECT remove_retention_policy('readings', if_exists => TRUE)")
        conn.execute("SELECT add_retention_policy('readings', %s::interval)", (retention,))
