from importlib import resources
from typing import Any

import psycopg
import pytest

from telehealth.storage import migrate
from telehealth.storage.migrate import Migration, MigrationError, available


def test_every_migration_pairs_with_its_optional_timescale_variant() -> None:
    migrations = available()
    assert [m.version for m in migrations] == sorted({m.version for m in migrations})
    assert migrations[0].timescale_sql is not None and "create_hypertable" in migrations[0].timescale_sql


async def test_migrate_is_idempotent_and_records_the_path(database_url: str, settings: Any) -> None:
    assert migrate(database_url) == []  # the session fixture already applied everything
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(
            "SELECT version, timescale, checksum FROM schema_migrations ORDER BY version"
        )
        rows = await cur.fetchall()
        assert [r[0] for r in rows] == [m.version for m in available()]
        cur = await conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'")
        has_timescale = (await cur.fetchone())[0] == 1  # type: ignore[index]
        assert all(r[1] == has_timescale for r in rows)
        assert [r[2] for r in rows] == [m.checksum(has_timescale) for m in available()]


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {r[0] for r in rows}


ONE = Migration(1, "one", "CREATE TABLE one (id int);", None)
TWO = Migration(2, "two", "CREATE TABLE two (id int);", None)


def test_a_changed_applied_migration_is_refused_and_nothing_further_applied(scratch: str) -> None:
    assert migrate(scratch, migrations=[ONE]) == ["0001_one"]
    edited = Migration(1, "one", "CREATE TABLE one (id bigint);", None)
    with pytest.raises(MigrationError, match=r"0001_one \(applied sha256 [0-9a-f]{12}, file now"):
        migrate(scratch, migrations=[edited, TWO])
    assert "two" not in _tables(scratch)
    # Line endings alone are not a change.
    crlf = Migration(1, "one", ONE.sql.replace("\n", "\r\n") + "\r\n", None)
    assert Migration(1, "one", ONE.sql + "\n", None).checksum(False) == crlf.checksum(False)
    assert migrate(scratch, migrations=[ONE, TWO]) == ["0002_two"]


def test_migrations_applied_before_checksums_were_kept_are_adopted(scratch: str) -> None:
    migrate(scratch, migrations=[ONE])
    with psycopg.connect(scratch, autocommit=True) as conn:
        conn.execute("UPDATE schema_migrations SET checksum = NULL")
    assert migrate(scratch, migrations=[ONE]) == []
    with psycopg.connect(scratch) as conn:
        row = conn.execute("SELECT checksum FROM schema_migrations WHERE version = 1").fetchone()
    assert row == (ONE.checksum(False),)


def test_a_fatal_error_surfaces_instead_of_a_closed_connection(scratch: str) -> None:
    """As CREATE EXTENSION does when TimescaleDB is installed but not preloaded: the server
    ends the session; the error must be that, not the unlock failing on a closed connection."""
    fatal = Migration(1, "fatal", "SELECT pg_terminate_backend(pg_backend_pid());", None)
    with pytest.raises(psycopg.OperationalError) as raised:
        migrate(scratch, migrations=[fatal])
    assert "terminating connection" in str(raised.value), raised.value
    assert "closed" not in str(raised.value)
    assert migrate(scratch, migrations=[ONE]) == ["0001_one"]  # the lock went with the session


def test_the_plain_path_is_recorded_on_a_server_without_timescaledb(scratch: str, timescaledb: bool) -> None:
    if timescaledb:
        pytest.skip("the server preloads TimescaleDB (the TimescaleDB path is tested below)")
    migrate(scratch, migrations=[ONE])
    with psycopg.connect(scratch) as conn:
        assert conn.execute("SELECT timescale FROM schema_migrations").fetchall() == [(False,)]


def _retention_jobs(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            """SELECT job_id, config->>'drop_after' FROM timescaledb_information.jobs
               WHERE proc_name = 'policy_retention' AND hypertable_name = 'readings'"""
        ).fetchall()


def test_timescaledb_path_without_0001_creates_the_extension_and_keeps_one_retention_job(
    scratch: str, timescaledb: bool
) -> None:
    """Whatever migrations are pending, the TimescaleDB path creates the extension itself; the
    retention job is replaced only when the retention setting changes."""
    if not timescaledb:
        pytest.skip("the server does not preload TimescaleDB (set TELEHEALTH_TIMESCALEDB)")
    readings = Migration(
        1,
        "readings",
        "CREATE TABLE readings (measured_at timestamptz NOT NULL, value float8);",
        "SELECT create_hypertable('readings', by_range('measured_at', INTERVAL '1 day'));",
    )
    # no CREATE EXTENSION in any migration
    assert migrate(scratch, migrations=[readings]) == ["0001_readings"]
    with psycopg.connect(scratch) as conn:
        assert conn.execute("SELECT timescale FROM schema_migrations").fetchall() == [(True,)]
    [(job, drop_after)] = _retention_jobs(scratch)
    assert drop_after == "2 years"
    assert migrate(scratch, migrations=[readings, TWO]) == ["0002_two"]
    assert migrate(scratch, migrations=[readings, TWO]) == []
    assert _retention_jobs(scratch) == [(job, "2 years")]
    migrate(scratch, migrations=[readings, TWO], retention="90 days")
    [(changed, drop_after)] = _retention_jobs(scratch)
    assert changed != job and drop_after == "90 days"


def test_readings_keep_no_index_on_time_alone(database_url: str, settings: Any) -> None:
    """0011 drops the index create_hypertable adds on measured_at alone (see its header)."""
    sql = (resources.files("telehealth.storage") / "migrations" / "0011_readings_indexes.sql").read_text()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE INDEX readings_measured_at_idx ON readings (measured_at DESC)")
        conn.execute("CREATE INDEX readings_keep_me ON readings (measured_at, patient_id)")
        try:
            conn.execute(sql.encode())
            rows = conn.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'readings'"
            ).fetchall()
        finally:
            conn.execute("DROP INDEX IF EXISTS readings_keep_me")
            conn.execute("DROP INDEX IF EXISTS readings_measured_at_idx")
    names = {r[0] for r in rows}
    assert "readings_measured_at_idx" not in names and "readings_keep_me" in names
    assert "readings_patient_code_time" in names
    assert any("(patient_id, code, measured_at DESC)" in r[1] for r in rows)


def test_generic_plans_for_one_patient_use_the_patient_code_index(scratch: str) -> None:
    """Once psycopg prepares a statement (after 5 uses) PostgreSQL may choose a generic plan,
    blind to the parameter values. For one patient's 30 days of hourly buckets (the shape of
    the observations query in dashboard_api/routes/patients.py) that plan must still go
    through the index leading with (patient_id, code), not scan the table or walk time.
    The rows end at midnight, so under TimescaleDB every chunk holds a whole day: a chunk of
    today's first minutes is rightly read whole, which is not the plan this test is about."""
    migrate(scratch)
    query = """SELECT date_bin('1 hour', measured_at, TIMESTAMPTZ 'epoch') AS bucket, code,
                      count(*), avg(value), min(value), max(value)
               FROM readings WHERE patient_id = $1 AND measured_at >= $2 AND measured_at < $3
                 AND ($4::text IS NULL OR code = $4) AND NOT ('implausible' = ANY(quality))
               GROUP BY 1, 2 ORDER BY 1, 2"""
    with psycopg.connect(scratch, autocommit=True) as conn:
        conn.execute(
            """INSERT INTO readings (patient_id, measured_at, code, value, unit, loinc, device_id,
                                     seq, received_at)
               SELECT ('00000000-0000-0000-0000-' || lpad((g % 200)::text, 12, '0'))::uuid,
                      date_trunc('day', now()) - make_interval(secs => g * 30),
                      (ARRAY['glucose', 'spo2', 'pulse'])[1 + g % 3],
                      5.5, 'mmol/L', '15074-8', 'cgm-' || (g % 200), g, now()
               FROM generate_series(1, 200000) g"""
        )
        conn.execute("ANALYZE readings")
        conn.execute("SET plan_cache_mode = force_generic_plan")
        conn.execute(f"PREPARE buckets (uuid, timestamptz, timestamptz, text) AS {query}")
        patient = "00000000-0000-0000-0000-000000000007"
        rows = conn.execute(
            f"EXPLAIN (COSTS OFF) EXECUTE buckets ('{patient}', now() - interval '30 days', now(), 'glucose')"
        ).fetchall()
    plan = "\n".join(r[0] for r in rows)
    assert "readings_patient_code_time" in plan and "Seq Scan" not in plan, plan
    assert "patient_id = $1" in plan, plan
