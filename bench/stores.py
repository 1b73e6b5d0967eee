"""Plain PostgreSQL against TimescaleDB: the same reads, writes and releases on each store.

Starts an embedded PostgreSQL of its own (with `--timescaledb`, a copy with that build added
and preloaded), migrates it, and writes `--patients` patients' CGM glucose every 5 minutes
for `--days` days straight into `readings` (server-side INSERT ... SELECT: this measures the
store, not the pipeline). Then times, for random patients, the dashboard's two reads (one
patient's last 24 h, as `GET .../observations` queries it, and the 14-day glucose summary),
reports the size of `readings`, and on TimescaleDB compresses the chunks older than 7 days
and times the summary again. Last, the research bench (`bench.research`) releases 30 days
hourly over `--research-patients` patients. `--before-migration N` migrates only the
versions below N and runs the research release alone (what an older schema gave), as
`--research-only` does on the current schema.

    python -m bench.stores [--timescaledb PATH] [--patients 200] [--days 30]
    python -m bench.stores --compare PATH [--repeats 7]   # releases on both stores, in turn
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import psycopg
from psycopg.rows import dict_row

from bench.research import measure as research
from launcher.embedded import EmbeddedPostgres
from telehealth.consent import Purpose
from telehealth.research.projects import Cohort, ProjectIn, create_project, get_project
from telehealth.research.release import Ask, release
from telehealth.storage import migrate
from telehealth.storage.consent_cache import ConsentCache
from telehealth.storage.glucose import glucose_summary
from telehealth.storage.migrate import available
from telehealth.storage.research_cells import GroupBy

_RAW_24H = """SELECT measured_at, code, value, unit, quality, device_id, seq FROM readings
    WHERE patient_id = %(patient)s AND measured_at >= %(start)s AND measured_at < %(end)s
      AND (%(code)s::text IS NULL OR code = %(code)s)
      AND measured_at >= TIMESTAMPTZ '2000-01-01 00:00Z' AND measured_at < now() + INTERVAL '1 day'
    ORDER BY measured_at, code LIMIT 20000"""


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _times(label: str, values: list[float]) -> str:
    return f"{label}: p50 {_pct(values, 0.5):.2f} ms, p99 {_pct(values, 0.99):.2f} ms ({len(values)} queries)"


async def _seed(conn: psycopg.AsyncConnection[Any], patients: int, days: int) -> tuple[list[UUID], str]:
    await conn.execute(
        """INSERT INTO patients (nhs_number, name, birth_date, sex, care_team)
           SELECT 'bench-s-' || i, 'Store ' || i, date '1950-01-01' + i, 'female', 'bench-stores'
           FROM generate_series(1, %s) i""",
        (patients,),
    )
    cur = await conn.execute("SELECT id FROM patients WHERE care_team = 'bench-stores' ORDER BY id")
    ids = [row[0] for row in await cur.fetchall()]
    await conn.commit()
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    started = time.perf_counter()
    rows = 0
    for day in range(days):  # a day per statement, committed, as a stream writes it
        cur = await conn.execute(
            """INSERT INTO readings (patient_id, measured_at, code, value, unit, loinc, source,
                                     device_id, seq, received_at)
               SELECT p.id, t, 'glucose', 4 + 6 * random(), 'mmol/L', '15074-8', 'cgm',
                      'cgm-' || p.id, extract(epoch FROM t)::bigint, t
               FROM patients p,
                    generate_series(%s::timestamptz - interval '1 day' + interval '5 minutes', %s,
                                    interval '5 minutes') t
               WHERE p.care_team = 'bench-stores'""",
            (end - timedelta(days=day), end - timedelta(days=day)),
        )
        rows += cur.rowcount
        await conn.commit()
    seconds = time.perf_counter() - started
    await conn.set_autocommit(True)
    await conn.execute("VACUUM (ANALYZE) readings")
    await conn.set_autocommit(False)
    return (
        ids,
        f"readings written: {rows:,} in {seconds:.1f} s ({rows / seconds:,.0f} rows/s, INSERT ... SELECT)",
    )


async def _read_once(conn: psycopg.AsyncConnection[Any], patient: UUID, now: datetime) -> tuple[float, float]:
    """Milliseconds of the dashboard's two reads for one patient: raw 24 h, 14-day summary."""
    started = time.perf_counter()
    async with conn.cursor(binary=True) as cur:
        await cur.execute(
            _RAW_24H, {"patient": patient, "start": now - timedelta(hours=24), "end": now, "code": None}
        )
        await cur.fetchall()
    raw = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    await glucose_summary(conn, patient, now - timedelta(days=14), now)
    summary = (time.perf_counter() - started) * 1000
    await conn.commit()
    return raw, summary


async def _reads(conn: psycopg.AsyncConnection[Any], ids: list[UUID], n: int, label: str) -> list[str]:
    pick = random.Random(7)
    times = [await _read_once(conn, pick.choice(ids), datetime.now(UTC)) for _ in range(n)]
    return [
        _times(f"one patient's last 24 h{label}", [t[0] for t in times]),
        _times(f"14-day glucose summary{label}", [t[1] for t in times]),
    ]


async def _compress_old(conn: psycopg.AsyncConnection[Any]) -> int:
    cur = await conn.execute(
        "SELECT count(compress_chunk(c)) FROM show_chunks('readings', older_than => interval '7 days') c"
    )
    row = await cur.fetchone()
    await conn.commit()
    await conn.set_autocommit(True)
    await conn.execute("ANALYZE readings")
    await conn.set_autocommit(False)
    return int(row[0]) if row else 0


async def _compare_reads(urls: dict[str, str], args: argparse.Namespace) -> list[str]:
    """The same reads on both stores, taken in turn; then again with TimescaleDB's chunks
    older than 7 days compressed."""
    lines: list[str] = []
    conns = {store: await psycopg.AsyncConnection.connect(url) for store, url in urls.items()}
    try:
        ids: dict[str, list[UUID]] = {}
        for store, conn in conns.items():
            ids[store], written = await _seed(conn, args.patients, args.days)
            lines.append(
                f"{store}: {written}; on disk {await _size(conn, store == 'TimescaleDB') / 1e6:,.0f} MB"
            )
        for label in ("", " (TimescaleDB: chunks older than 7 days compressed)"):
            if label:
                compressed = await _compress_old(conns["TimescaleDB"])
                size = await _size(conns["TimescaleDB"], True)
                lines.append(f"TimescaleDB: {compressed} chunks compressed; on disk {size / 1e6:,.0f} MB")
            pick = random.Random(7)
            times: dict[str, list[tuple[float, float]]] = {store: [] for store in conns}
            for _ in range(args.queries):
                k = pick.randrange(args.patients)
                for store, conn in conns.items():
                    times[store].append(await _read_once(conn, ids[store][k], datetime.now(UTC)))
            for store, t in times.items():
                lines.append(_times(f"{store}, one patient's last 24 h{label}", [x[0] for x in t]))
                lines.append(_times(f"{store}, 14-day glucose summary{label}", [x[1] for x in t]))
    finally:
        for conn in conns.values():
            await conn.close()
    return lines


async def _size(conn: psycopg.AsyncConnection[Any], timescale: bool) -> int:
    query = "SELECT hypertable_size('readings')" if timescale else "SELECT pg_total_relation_size('readings')"
    cur = await conn.execute(query)
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def run(url: str, args: argparse.Namespace) -> list[str]:
    lines: list[str] = []
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute("SELECT bool_or(timescale) FROM schema_migrations")
        row = await cur.fetchone()
        timescale = bool(row and row[0])
        lines.append(f"store: {'TimescaleDB' if timescale else 'plain PostgreSQL'}")
        if args.before_migration is None and not args.research_only:
            ids, written = await _seed(conn, args.patients, args.days)
            lines.append(written)
            lines += await _reads(conn, ids, args.queries, "")
            lines.append(f"readings on disk: {await _size(conn, timescale) / 1e6:,.0f} MB")
            if timescale:
                compressed = await _compress_old(conn)
                lines.append(
                    f"readings on disk, {compressed} chunks older than 7 days compressed:"
                    f" {await _size(conn, timescale) / 1e6:,.0f} MB"
                )
                lines += await _reads(conn, ids, args.queries, " (old chunks compressed)")
    lines.append(await research(url, patients=args.research_patients, days=args.days))
    return lines


async def _fresh_release(url: str, group_by: GroupBy, days: int) -> float:
    """Milliseconds of one release of a new project (nothing frozen yet), as bench.research."""
    async with await psycopg.AsyncConnection.connect(url, row_factory=dict_row) as conn:
        today = datetime.now(UTC).date()
        body = ProjectIn(
            slug=f"compare-{uuid4().hex[:12]}", title="Compare: 30-day hourly glucose", owner="bench",
            purpose=Purpose.RESEARCH, codes=["glucose"], cohort=Cohort(),
            starts_on=today - timedelta(days=days + 2), ends_on=today + timedelta(days=1),
        )  # fmt: skip
        project = await create_project(conn, body, "bench")
        await conn.commit()
        found = await get_project(conn, project.id)
        assert found is not None
        consent = ConsentCache()
        await consent.sync(conn)
        await conn.commit()
        end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
        ask = Ask(
            found[0], found[1], "aggregates", "glucose", timedelta(hours=1),
            end - timedelta(days=days), end, group_by, [10, 50, 90], "bench",
        )  # fmt: skip
        started = time.perf_counter()
        await release(conn, ask, consent, default_permit=False, epsilon_cap=10.0)
        took = (time.perf_counter() - started) * 1000
        await conn.commit()
    return took


def compare(build: Path, args: argparse.Namespace) -> list[str]:
    """Both stores at once, the same research data, fresh releases taken in turn: the machine's
    load falls on both alike."""
    scratch = Path(tempfile.mkdtemp(prefix="telehealth-bench-stores-"))
    scratch.chmod(0o755)
    plain = EmbeddedPostgres(scratch / "plain")
    timescale = EmbeddedPostgres(scratch / "timescaledb", timescaledb=build)
    servers = [plain, timescale]
    urls: dict[str, str] = {}
    try:
        urls["plain PostgreSQL"] = plain.start()
        # started second: from then on the library's programs come from the copy with the
        # extension (the same PostgreSQL, so they stop the plain server as well)
        urls["TimescaleDB"] = timescale.start()
        if args.before_migration is not None:  # a third server: the older schema on TimescaleDB
            older = EmbeddedPostgres(scratch / "older", timescaledb=build)
            servers.append(older)
            urls[f"TimescaleDB, migrations below {args.before_migration:04d}"] = older.start()
        for store, url in urls.items():
            below = args.before_migration if "below" in store else None
            migrate(url, migrations=None if below is None else [m for m in available() if m.version < below])
            asyncio.run(research(url, patients=args.research_patients, days=args.days))
        lines = asyncio.run(_compare_reads(urls, args)) if args.patients else []
        times: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.repeats):
            groupings: tuple[GroupBy, ...] = ("none", "sex")
            for group_by in groupings:
                for store, url in urls.items():
                    took = asyncio.run(_fresh_release(url, group_by, args.days))
                    times.setdefault((store, group_by), []).append(took)
        return lines + [
            f"{store}, fresh release {args.days} d hourly, {args.research_patients:,} patients,"
            f" group_by={group_by}: median {statistics.median(v):,.0f} ms, min {min(v):,.0f} ms,"
            f" max {max(v):,.0f} ms ({len(v)} releases)"
            for (store, group_by), v in sorted(times.items(), key=lambda kv: (kv[0][1], kv[0][0]))
        ]
    finally:
        for server in reversed(servers):
            server.stop()
        shutil.rmtree(scratch, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--timescaledb", type=Path, help="TimescaleDB build: directory or .tar.xz archive")
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--research-patients", type=int, default=1000)
    parser.add_argument("--before-migration", type=int, help="apply only migrations below this version")
    parser.add_argument("--research-only", action="store_true", help="only the research release")
    parser.add_argument(
        "--compare", type=Path, metavar="BUILD", help="fresh releases on both stores in turn (this build)"
    )
    parser.add_argument("--repeats", type=int, default=7, help="--compare: releases per store and grouping")
    args = parser.parse_args()
    if args.compare is not None:
        for line in compare(args.compare, args):
            print(line, flush=True)
        return
    scratch = Path(tempfile.mkdtemp(prefix="telehealth-bench-stores-"))
    scratch.chmod(0o755)  # the server may run as another user
    server = EmbeddedPostgres(scratch, timescaledb=args.timescaledb)
    try:
        url = server.start()
        todo = (
            None
            if args.before_migration is None
            else [m for m in available() if m.version < args.before_migration]
        )
        migrate(url, migrations=todo)
        for line in asyncio.run(run(url, args)):
            print(line, flush=True)
    finally:
        server.stop()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
