"""What only the TimescaleDB path has: the research rollups it converts, compressed chunks.

These skip on a server without TimescaleDB preloaded; the suite runs them when
TELEHEALTH_TIMESCALEDB names a TimescaleDB build (tests/conftest.py)."""

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest

from processor.normalise import NormalisedObservation
from processor.sink import ReadingSink, prepare
from telehealth.contracts import AcceptedReading
from telehealth.storage import migrate
from telehealth.storage.glucose import glucose_summary
from telehealth.storage.migrate import available
from telehealth.storage.patient_now import patient_now

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


def _observation(patient: UUID, seq: int, at: datetime, value: float) -> NormalisedObservation:
    return NormalisedObservation(
        patient_id=patient, device_id="cgm-ts", seq=seq, measured_at=at, received_at=at,
        code="glucose", value=value, unit="mmol/L", loinc="15074-8", source="cgm", quality=(),
    )  # fmt: skip


async def _write(
    conn: psycopg.AsyncConnection[Any], patient: UUID, rows: list[tuple[int, datetime, float]]
) -> set[Any]:
    """Through the processor's own writer: receipts first, so a redelivery is not stored."""
    sink = ReadingSink()
    for seq, at, value in rows:
        reading = AcceptedReading.model_construct(
            device_id="cgm-ts", seq=seq, measured_at=at, observations=[], battery_pct=None, context={},
            received_at=at,
        )  # fmt: skip
        sink.add(reading, patient, [_observation(patient, seq, at, value)])
    async with conn.transaction():
        return await sink.flush(conn)


async def _reads(conn: psycopg.AsyncConnection[Any], patient: UUID, now: datetime) -> tuple[Any, ...]:
    summary = await glucose_summary(conn, patient, now - timedelta(days=14), now)
    raw = await (
        await conn.execute(
            """SELECT measured_at, code, value, seq FROM readings
               WHERE patient_id = %s AND measured_at >= %s AND measured_at < %s ORDER BY measured_at""",
            (patient, now - timedelta(days=10, hours=12), now - timedelta(days=9, hours=12)),
        )
    ).fetchall()
    return summary, raw, await patient_now(conn, patient, now)


async def test_old_chunks_compress_and_read_the_same_and_late_readings_are_stored_once(
    timescale_scratch: str,
) -> None:
    """Compression (after 7 days, by policy) must not change what any read of `readings`
    returns: raw points, the 14-day summary and AGP, the patient's latest values. Research
    reads never touch `readings` (they read the rollups). A late reading into a compressed
    chunk is stored, and once: its receipt keeps a redelivery out."""
    migrate(timescale_scratch)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    async with await psycopg.AsyncConnection.connect(timescale_scratch, autocommit=True) as conn:
        cur = await conn.execute(
            """INSERT INTO patients (nhs_number, name, birth_date, sex, care_team)
               VALUES ('ts-compress', 'TS', '1970-01-01', 'female', 'ts') RETURNING id"""
        )
        patient = (await cur.fetchone())[0]  # type: ignore[index]
        await conn.execute(
            """INSERT INTO devices (id, patient_id, kind, secret_hash, expected_interval_s)
               VALUES ('cgm-ts', %s, 'cgm', 'x', 300)""",
            (patient,),
        )
        await prepare(conn)
        steps = 14 * 288
        rows = [(k, now - timedelta(minutes=5 * (steps - k)), 4 + (k * 7 % 90) / 10) for k in range(steps)]
        assert len(await _write(conn, patient, rows)) == steps
        before = await _reads(conn, patient, now)
        cur = await conn.execute(
            "SELECT count(compress_chunk(c)) FROM show_chunks('readings', older_than => interval '7 days') c"
        )
        compressed = (await cur.fetchone())[0]  # type: ignore[index]
        assert compressed >= 6
        assert await _reads(conn, patient, now) == before

        # late: one new reading and one redelivered, both into a compressed chunk
        late_at = now - timedelta(days=10, minutes=2)
        old_seq, old_at, old_value = rows[4 * 288]
        assert old_at < now - timedelta(days=8)
        fresh = await _write(conn, patient, [(steps + 1, late_at, 6.6), (old_seq, old_at, old_value)])
        assert fresh == {("cgm-ts", steps + 1)}
        assert await _write(conn, patient, [(steps + 1, late_at, 6.6)]) == set()  # redelivered again
        cur = await conn.execute(
            """SELECT seq, count(*) FROM readings WHERE device_id = 'cgm-ts' AND seq IN (%s, %s)
               GROUP BY 1 ORDER BY 1""",
            (old_seq, steps + 1),
        )
        assert await cur.fetchall() == [(old_seq, 1), (steps + 1, 1)]
        cur = await conn.execute(
            """SELECT c.is_compressed FROM timescaledb_information.chunks c
               WHERE c.hypertable_name = 'readings' AND %s >= c.range_start AND %s < c.range_end""",
            (late_at, late_at),
        )
        assert await cur.fetchall() == [(True,)]  # still compressed, with the late row in it
        summary, raw, _ = await _reads(conn, patient, now)
        assert summary["readings"] == before[0]["readings"] + 1
        assert (late_at, "glucose", 6.6, steps + 1) in raw


def test_the_apache_licence_takes_the_plain_path(timescale_scratch: str) -> None:
    """Under `timescaledb.license = 'apache'` compression and policies are missing: the
    database is migrated plain instead of failing half-way."""
    name = psycopg.conninfo.conninfo_to_dict(timescale_scratch)["dbname"]
    with psycopg.connect(timescale_scratch, autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE \"{name}\" SET timescaledb.license = 'apache'")
    migrate(timescale_scratch)
    with psycopg.connect(timescale_scratch) as conn:
        assert conn.execute("SELECT DISTINCT timescale FROM schema_migrations").fetchall() == [(False,)]
        assert conn.execute("SELECT extname FROM pg_extension WHERE extname = 'timescaledb'").fetchall() == []
