"""Research query scale: a 30-day hourly aggregate over 10,000 consenting patients.

Seeds (in SQL, on the database only) patients with a research consent, and one eligible
glucose reading per patient-hour through `research_readings`, so the hourly rollup is
maintained exactly as the processor maintains it (a trigger, on both stores); a patient-hour
rollup row is the unit of query cost, however many readings it summarises. Then times the
release path researchers hit (`telehealth.research.release.release`: consent check of the
cohort, cells, disclosure control, register, frozen cells, contributors), fresh and repeated.

    python -m bench.research DATABASE_URL [--patients 10000] [--days 30]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg.rows import dict_row

from telehealth.consent import Purpose
from telehealth.research.disclosure import QUARTILES
from telehealth.research.projects import Cohort, Project, ProjectIn, create_project, get_project
from telehealth.research.release import Ask, release
from telehealth.storage import migrate
from telehealth.storage.consent_cache import ConsentCache
from telehealth.storage.research_hourly import rollup_available

TAG = "bench-research"
_ROLLUPS = (
    "research_hourly",
    "research_hourly_cells",
    "research_hourly_bins",
    "research_hourly_bins_sex",
    "research_hourly_bins_all",
    "research_patient_days",
)


async def _seed(
    conn: psycopg.AsyncConnection[dict[str, object]], patients: int, days: int
) -> tuple[float, int]:
    """Returns (seconds spent inserting readings, readings inserted)."""
    await conn.execute(
        """INSERT INTO patients (nhs_number, name, birth_date, sex, conditions, care_team)
           SELECT 'bench-r-' || i, 'Bench ' || i, date '1940-01-01' + (i * 37 %% 25000),
                  (ARRAY['female', 'male'])[1 + i %% 2], ARRAY[%s], %s
           FROM generate_series(1, %s) AS i ON CONFLICT (nhs_number) DO NOTHING""",
        (TAG, TAG, patients),
    )
    await conn.execute(
        """WITH c AS (UPDATE consent_clock SET seq = seq + %(n)s RETURNING seq)
           INSERT INTO patient_consents (patient_id, version, provisions, national_opt_out, recorded_by,
                                         recorded_by_role, applies_from, change_seq)
           SELECT p.id, 1, '[{"purpose": "research", "decision": "permit", "codes": ["glucose"]}]',
                  false, 'bench', 'admin', now() - interval '400 days',
                  (SELECT seq FROM c) - %(n)s + row_number() OVER (ORDER BY p.id)
           FROM patients p WHERE %(tag)s = ANY(p.conditions)
             AND NOT EXISTS (SELECT 1 FROM patient_consents x WHERE x.patient_id = p.id)""",
        {"n": patients, "tag": TAG},
    )
    await conn.commit()
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    started = time.perf_counter()
    rows = 0
    for day in range(days):
        day_end = end - timedelta(days=day)
        cur = await conn.execute(
            """INSERT INTO research_readings (purpose, code, patient_id, measured_at, value, consent_version)
               SELECT 'research', 'glucose', p.id, h + interval '17 minutes', 4 + random() * 8, 1
               FROM patients p,
                    generate_series(%s::timestamptz - interval '23 hours', %s, interval '1 hour') h
               WHERE %s = ANY(p.conditions)""",
            (day_end, day_end, TAG),
        )
        rows += cur.rowcount
        await conn.commit()
    seconds = time.perf_counter() - started
    # What autovacuum does soon after a bulk load; index-only scans need the visibility map.
    # (Before migration 0035, research_hourly was a continuous aggregate under TimescaleDB.)
    plain = await rollup_available(conn)
    await conn.commit()
    if plain:
        await conn.set_autocommit(True)
        for table in _ROLLUPS:
            await conn.execute(f"VACUUM (ANALYZE) {table}".encode())
        await conn.set_autocommit(False)
    return seconds, rows


async def _project(
    conn: psycopg.AsyncConnection[dict[str, object]], days: int, slug: str
) -> tuple[Project, bytes]:
    today = datetime.now(UTC).date()
    body = ProjectIn(
        slug=slug,
        title="Bench: 30-day hourly glucose",
        owner="bench",
        purpose=Purpose.RESEARCH,
        codes=["glucose"],
        cohort=Cohort(),  # everyone: the bench database holds only its own patients
        starts_on=today - timedelta(days=days + 2),
        ends_on=today + timedelta(days=1),
    )
    project = await create_project(conn, body, "bench")
    await conn.commit()
    found = await get_project(conn, project.id)
    assert found is not None
    return found


async def measure(url: str, patients: int = 10_000, days: int = 30) -> str:
    async with await psycopg.AsyncConnection.connect(url, row_factory=dict_row) as conn:
        seconds, rows = await _seed(conn, patients, days)
        end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
        lines = [
            f"research rollup: {rows:,} eligible readings in {seconds:.1f} s "
            f"({rows / seconds:,.0f} rows/s incl. rollup maintenance)"
        ]
        # The API keeps this cache for its lifetime (loaded at start-up, then kept current by
        # LISTEN and the consent clock), so its first load is not part of a release.
        consent = ConsentCache()
        started = time.perf_counter()
        await consent.sync(conn)
        await conn.commit()
        lines.append(
            f"consent cache loaded at API start-up: {sum(1 for _ in consent.items()):,} patients in"
            f" {(time.perf_counter() - started) * 1000:,.0f} ms"
        )
        # The first project's releases, fresh and repeated; then a second project's over the
        # same days, checked for differencing against every cell the first one released.
        first = await _project(conn, days, f"bench-{int(time.time())}")
        second = await _project(conn, days, f"bench-{int(time.time())}-second")
        for project, attempts in ((first, ("fresh", "repeat")), (second, ("second project",))):
            for group_by in ("none", "sex"):
                ask = Ask(
                    project[0], project[1], "aggregates", "glucose", timedelta(hours=1),
                    end - timedelta(days=days), end, group_by, list(QUARTILES), "bench",
                )  # fmt: skip
                for attempt in attempts:
                    started = time.perf_counter()
                    outcome = await release(conn, ask, consent, default_permit=False, epsilon_cap=10.0)
                    took = time.perf_counter() - started
                    shown = sum(1 for c in outcome.cells if not c["suppressed"])
                    lines.append(
                        f"research aggregate {days} d hourly, {patients:,} patients, group_by={group_by}, "
                        f"{attempt}: {took * 1000:,.0f} ms ({len(outcome.cells)} cells, {shown} released)"
                    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("database_url")
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()
    migrate(args.database_url)
    print(asyncio.run(measure(args.database_url, args.patients, args.days)))


if __name__ == "__main__":
    main()
