"""Offered load against what the pipeline stores, and how long each reading took, step by step.

Each step publishes single-reading messages at a fixed offered rate for a few seconds (the
publishers pace themselves), waits until every reading is stored, and reads back from the
receipts: achieved readings/s (first publish to last store), and publish -> stored latency
percentiles (the reading's `measured_at` is stamped at publish; `stored_at` is the storing
transaction's start on the database clock: the same machine clock).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from bench.load import collect, publish_worker
from telehealth.topics import readings_topic


@dataclass
class SweepPoint:
    offered_readings_s: float
    published_readings_s: float
    achieved_readings_s: float
    stored: int
    sent: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float


_LATENCY = """
SELECT count(*)::int,
       extract(epoch FROM max(stored_at) - min(measured_at))::float8,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY stored_at - measured_at),
       percentile_cont(0.9) WITHIN GROUP (ORDER BY stored_at - measured_at),
       percentile_cont(0.99) WITHIN GROUP (ORDER BY stored_at - measured_at),
       max(stored_at - measured_at)
FROM reading_receipts WHERE device_id = ANY(%(devices)s) AND seq >= %(lo)s AND seq < %(hi)s
"""


def _ms(interval: Any) -> float:
    return 1000 * interval.total_seconds() if interval is not None else float("nan")


def step(
    database_url: str,
    load: tuple[str, str | None],
    devices: list[str],
    rate: float,
    seconds: float,
    publishers: int,
) -> SweepPoint:
    """One offered rate; blocks until all its readings are stored (or 120 s pass)."""
    ctx = mp.get_context("spawn")
    out: Any = ctx.Queue()
    messages = max(publishers, int(rate * seconds))
    start_seq = int(time.time() * 1000) * 1000
    procs = [
        ctx.Process(
            target=publish_worker,
            args=(
                load[0],
                readings_topic("{}"),
                devices[i::publishers],
                messages // publishers,
                1,
                start_seq,
                out,
                rate / publishers,
                load[1],
                True,
            ),
        )
        for i in range(publishers)
    ]
    for p in procs:
        p.start()
    results = collect(out, procs)
    for p in procs:
        p.join()
    sent = sum(r[2] for r in results)
    if unacked := (messages // publishers) * publishers - sent:  # a publisher gave up waiting
        print(f"  sweep: {unacked:,} published messages were never acknowledged", flush=True)
    published = sent / (max(r[1] for r in results) - min(r[0] for r in results))
    params = {"devices": devices, "lo": start_seq, "hi": start_seq + messages + 1}
    deadline = time.monotonic() + 120
    with psycopg.connect(database_url, autocommit=True) as conn:
        while True:
            row = conn.execute(_LATENCY, params).fetchone()
            assert row is not None
            if row[0] >= sent or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    stored, span, p50, p90, p99, worst = row
    return SweepPoint(
        offered_readings_s=rate,
        published_readings_s=published,
        achieved_readings_s=stored / span if span else 0.0,
        stored=stored,
        sent=sent,
        p50_ms=_ms(p50),
        p90_ms=_ms(p90),
        p99_ms=_ms(p99),
        max_ms=_ms(worst),
    )


def sweep(
    database_url: str,
    load: tuple[str, str | None],
    devices: list[str],
    rates: list[float],
    seconds: float,
    publishers: int,
    during: Callable[[str], contextlib.AbstractContextManager[None]] | None = None,
) -> list[SweepPoint]:
    """`during(label)` wraps each step (label "sweep 3,000/s"), e.g. to time queries per load."""
    points = []
    for rate in rates:
        print(f"  sweep: offering {rate:,.0f} readings/s for {seconds:.0f} s ...", flush=True)
        with during(f"sweep {rate:,.0f}/s") if during else contextlib.nullcontext():
            point = step(database_url, load, devices, rate, seconds, publishers)
        print(
            f"  sweep: achieved {point.achieved_readings_s:,.0f} readings/s,"
            f" p50 {point.p50_ms:.0f} ms, p99 {point.p99_ms:.0f} ms",
            flush=True,
        )
        points.append(point)
    return points
