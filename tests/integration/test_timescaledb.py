"""What only the TimescaleDB path has: the research rollups it converts, compressed chunks.

These skip on a server without TimescaleDB preloaded; the suite runs them when
TELEHEALTH_TIMESCALEDB names a TimescaleDB build (tests/conftest.py)."""

from typing import Any

import psycopg
import pytest

from telehealth.storage import migrate
from telehealth.storage.migrate import available

ROLLUP_FROM_RAW = """
    SELECT purpose, code, date_bin('1 hour', measured_at, TIMESTAMPTZ 'epoch') AS hour, patient_id,
           count(*)::bigint AS n, sum(value) AS total, min(value) AS lo, max(value) AS hi
    FROM research_readings GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"""
ROLLUP = "SELECT purpose, code, hour, patient_id, n, total, lo, hi FROM research_hourly ORDER BY 1, 2, 3, 4"
CELLS = """SELECT hour, sex, age_band, patients, readings FROM research_hourly_cells
           WHERE purpose = 'research' ORDER BY 1, 2, 3"""
CELLS_FROM_RAW = (
    """
    SELECT h.hour, p.sex, research_age_band(p.birth_date, h.hour) AS age_band,
           count(*)::bigint AS patients, sum(least(h.n, 60))::bigint AS readings
    FROM ("""
    + ROLLUP_FROM_RAW.replace("ORDER BY 1, 2, 3, 4", "")
    + """) h
    JOIN patients p ON p.id = h.patient_id
    WHERE h.purpose = 'research' GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"""
)


@pytest.fixture
def timescale_scratch(scratch: str, timescaledb: bool) -> str:
    if not timescaledb:
        pytest.skip("the server does not preload TimescaleDB (set TELEHEALTH_TIMESCALEDB)")
    return scratch


def _research_rows(conn: psycopg.Connection[Any], hours_ago: int, patients: int = 12) -> None:
    conn.execute(
        """INSERT INTO research_readings (purpose, code, patient_id, measured_at, value, consent_version)
           SELECT 'research', 'glucose', p.id,
                  date_trunc('hour', now()) - make_interval(hours => %s) + make_interval(mins => m),
                  4 + (m %% 7) + row_number() OVER () %% 5, 1
           FROM (SELECT id FROM patients ORDER BY nhs_number LIMIT %s) p, generate_series(0, 50, 10) m""",
        (hours_ago, patients),
    )


def test_0035_turns_the_aggregate_into_trigger_rollups_with_every_row(timescale_scratch: str) -> None:
    """A database migrated before 0035 (hypertable, continuous aggregate, no cell rollups)
    keeps every research row, and gets rollups equal to the raw rows, refresh or not."""
    before = [m for m in available() if m.version < 35]
    migrate(timescale_scratch, migrations=before)
    with psycopg.connect(timescale_scratch, autocommit=True) as conn:
        conn.execute(
            """INSERT INTO patients (nhs_number, name, birth_date, sex, care_team)
               SELECT 'ts-' || i, 'TS ' || i, date '1940-01-01' + i * 1500,
                      (ARRAY['female', 'male'])[1 + i % 2], 'ts'
               FROM generate_series(1, 12) i"""
        )
        for hours_ago in (30, 5, 2):
            _research_rows(conn, hours_ago)
        kind = conn.execute("SELECT relkind FROM pg_class WHERE relname = 'research_hourly'").fetchone()
        assert kind == ("v",)  # the continuous aggregate's view
        raw = conn.execute("SELECT count(*) FROM research_readings").fetchone()
    assert migrate(timescale_scratch) == [m.label for m in available() if m.version >= 35]
    with psycopg.connect(timescale_scratch, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM research_readings").fetchone() == raw == (216,)
        hypertables = conn.execute(
            "SELECT hypertable_name FROM timescaledb_information.hypertables"
        ).fetchall()
        assert hypertables == [("readings",)]
        assert conn.execute(ROLLUP).fetchall() == conn.execute(ROLLUP_FROM_RAW).fetchall()
        assert conn.execute(CELLS).fetchall() == conn.execute(CELLS_FROM_RAW).fetchall()
        # a late row into an hour long closed is in the rollups as soon as it is committed
        _research_rows(conn, 30, patients=3)
        assert conn.execute(ROLLUP).fetchall() == conn.execute(ROLLUP_FROM_RAW).fetchall()
        assert conn.execute(CELLS).fetchall() == conn.execute(CELLS_FROM_RAW).fetchall()
        jobs = conn.execute("SELECT proc_name FROM timescaledb_information.jobs ORDER BY 1").fetchall()
    # compression and retention on readings; no refresh policy for a continuous aggregate
    assert ("policy_refresh_continuous_aggregate",) not in jobs
    assert ("policy_compression",) in jobs and ("policy_retention",) in jobs
