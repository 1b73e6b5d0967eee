"""Versioned migrations: `NNNN_name.sql`, plus `NNNN_name.timescale.sql` when TimescaleDB is there.

Each version is applied once, in order, in its own transaction, under an advisory lock so
that services starting together do not race. The SHA-256 of what was applied is recorded;
a file changed after it was applied is refused, since the database no longer matches it.
The path (TimescaleDB or plain) is chosen once, by the first migration applied, and kept.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import psycopg

from telehealth.errors import TelehealthError

log = logging.getLogger(__name__)
_LOCK_KEY = 7_301_942


class MigrationError(TelehealthError):
    """The database and the migration files disagree; nothing was applied."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str
    timescale_sql: str | None

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"

    def checksum(self, timescale: bool) -> str:
        """SHA-256 of the SQL this path applies (line endings normalised)."""
        parts = [self.sql]
        if timescale and self.timescale_sql:
            parts.append(self.timescale_sql)
        text = "\n-- timescale --\n".join(parts).replace("\r\n", "\n")
        return hashlib.sha256(text.encode()).hexdigest()


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


def preloaded(shared_preload_libraries: str) -> bool:
    """Whether `timescaledb` is in the server's `shared_preload_libraries` value."""
    names = (n.strip().strip('"').strip() for n in shared_preload_libraries.split(","))
    return any(n == "timescaledb" or n.startswith("timescaledb-") for n in names)


@dataclass(frozen=True)
class Path:
    timescale: bool
    why: str
    #: a fallback the operator may not expect: logged as a warning
    degraded: bool = False


#: `timescaledb.license` values under which compression, continuous aggregates and policies
#: (the Timescale License part the TimescaleDB path uses) are there; unset means the default
_FULL_LICENCES = (None, "", "timescale")


def choose_path(
    *, available: bool, preloaded: bool, recorded: bool | None, licence: str | None = None
) -> Path:
    """TimescaleDB or plain PostgreSQL. `recorded` is the path earlier migrations took (None
    on a fresh database): a database is never switched half-way, which would leave tables
    of one path beside queries of the other. `licence` is the server's `timescaledb.license`:
    under `apache` the TimescaleDB path's compression and policies are missing."""
    licensed = licence in _FULL_LICENCES
    usable = available and preloaded and licensed
    if recorded is True and not usable:
        if not available:
            why = "does not offer the extension: install it"
        elif not preloaded:
            why = "has not preloaded it: add timescaledb to shared_preload_libraries and restart PostgreSQL"
        else:
            why = (
                f"runs it with timescaledb.license = '{licence}':"
                " set it to 'timescale' and restart PostgreSQL"
            )
        raise MigrationError(f"this database was migrated with TimescaleDB, but the server {why}")
    if recorded is True:
        return Path(True, "TimescaleDB, as the database was first migrated")
    if recorded is False:
        return Path(False, "plain PostgreSQL, as the database was first migrated")
    if usable:
        return Path(True, "TimescaleDB is installed and preloaded")
    if available and preloaded:
        return Path(
            False,
            f"TimescaleDB runs with timescaledb.license = '{licence}', which leaves out the compression,"
            " continuous aggregates and policies its path uses; using plain PostgreSQL",
            degraded=True,
        )
    if available:
        return Path(
            False,
            "TimescaleDB is installed but not in shared_preload_libraries, so it cannot be loaded;"
            " using plain PostgreSQL (preload it and migrate a fresh database to use it)",
            degraded=True,
        )
    return Path(False, "TimescaleDB is not installed; using plain PostgreSQL")


def _server_path(conn: psycopg.Connection[tuple[object, ...]], recorded: bool | None) -> Path:
    row = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
    setting = conn.execute("SHOW shared_preload_libraries").fetchone()
    # Before the extension exists in this database the value is the configured one (a
    # placeholder), which is what the extension will run with.
    licence = conn.execute("SELECT current_setting('timescaledb.license', true)").fetchone()
    return choose_path(
        available=row is not None,
        preloaded=preloaded(str(setting[0]) if setting else ""),
        recorded=recorded,
        licence=None if licence is None or licence[0] is None else str(licence[0]),
    )


#: Checksums of earlier texts of a migration that differ from today's in comments only, by
#: (version, TimescaleDB path): a database that applied one is up to date, and its record is
#: moved to the current text.
SUPERSEDED: dict[tuple[int, bool], frozenset[str]] = {
    # 0005's TimescaleDB part claimed real-time aggregation showed late rows (it does not)
    (5, True): frozenset({"f0f9b58c7d5807378a8d614a0018223d41ba55e96db7ab937a203e8079d5bf51"}),
}


def verify_applied(
    migrations: Sequence[Migration], applied: dict[int, tuple[str, bool, str | None]]
) -> list[tuple[int, str]]:
    """Refuse when an applied migration's file changed; returns the checksums to record for
    versions applied before checksums were kept, or as a text `SUPERSEDED` lists (taken as
    they are now)."""
    known = {m.version: m for m in migrations}
    adopt: list[tuple[int, str]] = []
    changed: list[str] = []
    for version, (name, timescale, recorded) in sorted(applied.items()):
        migration = known.get(version)
        if migration is None:
            log.warning("the database has migration %04d_%s, which this version does not ship", version, name)
            continue
        now = migration.checksum(timescale)
        if recorded is None or (recorded != now and recorded in SUPERSEDED.get((version, timescale), ())):
            adopt.append((version, now))
        elif recorded != now:
            changed.append(f"{migration.label} (applied sha256 {recorded[:12]}, file now {now[:12]})")
    if changed:
        raise MigrationError(
            "migration files changed after they were applied to this database: "
            + "; ".join(changed)
            + ". Restore them as they were, and put the change in a new migration."
        )
    return adopt


def migrate(
    url: str, *, retention: str = "2 years", migrations: Sequence[Migration] | None = None
) -> list[str]:
    """Apply pending migrations; returns the names applied. Safe to run repeatedly."""
    todo = available() if migrations is None else list(migrations)
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
            conn.execute("ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS checksum text")
            rows = conn.execute("SELECT version, name, timescale, checksum FROM schema_migrations").fetchall()
            done = {
                int(str(r[0])): (str(r[1]), bool(r[2]), None if r[3] is None else str(r[3])) for r in rows
            }
            for version, checksum in verify_applied(todo, done):
                conn.execute(
                    "UPDATE schema_migrations SET checksum = %s WHERE version = %s", (checksum, version)
                )
                log.info("recorded the current checksum of migration %04d", version)
            recorded = None if not done else any(t for _, t, _ in done.values())
            path = _server_path(conn, recorded)
            if any(m.version not in done for m in todo):
                (log.warning if path.degraded else log.info)("schema path: %s", path.why)
            if path.timescale:
                # whichever migrations are pending: their TimescaleDB parts and the retention
                # policy need it, and 0001 may have been applied long ago
                conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            for migration in todo:
                if migration.version in done:
                    continue
                with conn.transaction():
                    conn.execute(migration.sql.encode())
                    if path.timescale and migration.timescale_sql:
                        conn.execute(migration.timescale_sql.encode())
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name, timescale, checksum)"
                        " VALUES (%s, %s, %s, %s)",
                        (
                            migration.version,
                            migration.name,
                            path.timescale,
                            migration.checksum(path.timescale),
                        ),
                    )
                applied.append(migration.label)
                log.info("applied migration %s (timescale=%s)", migration.label, path.timescale)
            if path.timescale:
                _apply_retention(conn, retention)
        finally:
            # A FATAL error (e.g. an extension that must be preloaded) closes the connection;
            # the lock went with the session then, and the original error must surface.
            if not conn.closed and not conn.broken:
                conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied


def _apply_retention(conn: psycopg.Connection[tuple[object, ...]], retention: str) -> None:
    """Retention is a setting, so it is checked on every migrate rather than frozen in SQL; the
    policy's job is replaced only when the interval changed (otherwise its id and history stay)."""
    with conn.transaction():
        hypertable = conn.execute(
            "SELECT 1 FROM timescaledb_information.hypertables WHERE hypertable_name = 'readings'"
        ).fetchone()
        if hypertable is None:  # a partial list of migrations, as some tests apply
            return
        current = conn.execute(
            """SELECT (config->>'drop_after')::interval = %s::interval
               FROM timescaledb_information.jobs
               WHERE proc_name = 'policy_retention' AND hypertable_name = 'readings'""",
            (retention,),
        ).fetchall()
        if len(current) == 1 and current[0][0]:
            return
        conn.execute("SELECT remove_retention_policy('readings', if_exists => TRUE)")
        conn.execute("SELECT add_retention_policy('readings', %s::interval)", (retention,))
        log.info("retention policy for readings: drop chunks older than %s", retention)
