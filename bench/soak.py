"""A steady offered load for minutes: does the backlog stay flat, and does memory?

Paced publisher processes offer single-reading messages at one rate for `seconds`. Every
`every` seconds a sample records what the publishers have had acknowledged by the broker,
what the store holds of it (receipts), the backlog between the two, and each service's RSS
and CPU time; the publishers' own CPU is measured too, so a run where the load generator
shares the machine can be read with its cost subtracted. The figures are least-squares slopes
over the samples after the first minute (start-up and the first allocations are not a trend):
backlog in readings/s (flat is about 0; a pipeline that cannot keep up grows by the shortfall)
and RSS in MiB per minute.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import psutil
import psycopg

from bench.load import collect, publish_worker
from telehealth.topics import readings_topic

#: samples before this many seconds are left out of the slopes
WARM_UP_S = 60.0


@dataclass
class SoakSample:
    at_s: float
    published: int
    stored: int
    rss_mib: dict[str, float]
    cpu_s: dict[str, float]
    #: taken while the publishers still ran (not while the backlog drained after)
    loaded: bool = True

    @property
    def backlog(self) -> int:
        return self.published - self.stored


@dataclass
class Soak:
    offered_readings_s: float
    seconds: float
    samples: list[SoakSample] = field(default_factory=list)
    #: the publishers' CPU seconds over the whole run
    generator_cpu_s: float = 0.0

    def _steady(self) -> list[SoakSample]:
        loaded = [s for s in self.samples if s.loaded]
        steady = [s for s in loaded if s.at_s >= WARM_UP_S]
        return steady if len(steady) >= 3 else loaded

    @property
    def stored_readings_s(self) -> float:
        """Stored per second while the load ran, after the warm-up."""
        steady = self._steady()
        first, last = steady[0], steady[-1]
        return (last.stored - first.stored) / max(1e-9, last.at_s - first.at_s)

    @property
    def backlog_slope(self) -> float:
        """Readings/s the backlog grew by after the warm-up (about 0: flat)."""
        steady = self._steady()
        return _slope([s.at_s for s in steady], [float(s.backlog) for s in steady])

    def rss_slope_mib_min(self) -> dict[str, float]:
        steady = self._steady()
        return {
            name: 60 * _slope([s.at_s for s in steady], [s.rss_mib[name] for s in steady])
            for name in steady[0].rss_mib
        }

    def cpu_us_per_reading(self) -> dict[str, float]:
        """Each service's CPU per stored reading over the run (the drain included), and the load
        generator's per published reading (its CPU as of its last sample)."""
        first, last = self.samples[0], self.samples[-1]
        stored = max(1, last.stored - first.stored)
        per = {name: 1e6 * (last.cpu_s[name] - first.cpu_s[name]) / stored for name in last.cpu_s}
        per["load generator"] = 1e6 * self.generator_cpu_s / max(1, last.published)
        return per

    def report(self) -> str:
        last = self.samples[-1]
        rss = ", ".join(f"{k} {v:+.2f}" for k, v in self.rss_slope_mib_min().items())
        peak = ", ".join(f"{k} {max(s.rss_mib[k] for s in self.samples):.0f}" for k in last.rss_mib)
        cpu = ", ".join(f"{k} {v:.0f} µs" for k, v in self.cpu_us_per_reading().items())
        return "\n".join(
            [
                f"soak: offered {self.offered_readings_s:,.0f} readings/s for {self.seconds:.0f} s"
                f" (single-reading messages), {len(self.samples)} samples",
                f"  stored {self.stored_readings_s:,.0f} readings/s; backlog at end {last.backlog:,},"
                f" largest {max(s.backlog for s in self.samples):,};"
                f" slope under load after {WARM_UP_S:.0f} s: {self.backlog_slope:+,.1f} readings/s",
                f"  RSS slope (MiB/min): {rss}; peak RSS (MiB): {peak}",
                f"  CPU per stored reading: {cpu}",
            ]
        )


def _slope(xs: list[float], ys: list[float]) -> float:
    if len(xs) < 2 or len(set(xs)) < 2:
        return 0.0
    return statistics.linear_regression(xs, ys).slope


_STORED = "SELECT count(*)::int FROM reading_receipts WHERE device_id = ANY(%s) AND seq >= %s"


def soak(
    database_url: str,
    load: tuple[str, str | None],
    devices: list[str],
    pids: dict[str, int],
    rate: float,
    seconds: float,
    publishers: int = 2,
    every: float = 10.0,
) -> Soak:
    """Offer `rate` readings/s for `seconds`, sampling every `every` s; then wait (at most
    120 s) until what was published is stored, so the last sample shows the drained backlog."""
    ctx = mp.get_context("spawn")
    out: Any = ctx.Queue()
    progress = [ctx.Value("q", 0) for _ in range(publishers)]
    start_seq = int(time.time() * 1000) * 1000
    messages = int(rate * seconds) // publishers
    workers = [
        ctx.Process(
            target=publish_worker,
            args=(load[0], readings_topic("{}"), devices[i::publishers], messages, 1, start_seq, out),
            kwargs={"rate_msgs_s": rate / publishers, "ca_file": load[1], "progress": progress[i]},
        )
        for i in range(publishers)
    ]
    services = {name: psutil.Process(pid) for name, pid in pids.items()}
    result = Soak(rate, seconds)
    generator: dict[int, float] = {}
    with psycopg.connect(database_url, autocommit=True) as conn:

        def sample(started: float, loaded: bool = True) -> None:
            published = sum(int(p.value) for p in progress)
            row = conn.execute(_STORED, (devices, start_seq)).fetchone()
            rss: dict[str, float] = {}
            cpu: dict[str, float] = {}
            for name, proc in services.items():
                with contextlib.suppress(psutil.Error):
                    rss[name] = proc.memory_info().rss / 2**20
                    times = proc.cpu_times()
                    cpu[name] = times.user + times.system
            for w in workers:
                with contextlib.suppress(psutil.Error, ValueError):
                    times = psutil.Process(w.pid).cpu_times()
                    generator[w.pid or 0] = times.user + times.system
            stored = int(row[0]) if row else 0
            at = time.monotonic() - started
            loaded = loaded and at <= seconds  # the publishers are paced to finish at `seconds`
            result.samples.append(SoakSample(at, published, stored, rss, cpu, loaded))

        for w in workers:
            w.start()
        started = time.monotonic()
        sample(started)
        while any(w.is_alive() for w in workers) and time.monotonic() - started < seconds + 600:
            time.sleep(every - (time.monotonic() - started) % every)
            sample(started)
            last = result.samples[-1]
            print(
                f"  soak {last.at_s:5.0f} s: published {last.published:,}, stored {last.stored:,},"
                f" backlog {last.backlog:,}",
                flush=True,
            )
        collect(out, workers)
        for w in workers:
            w.join()
        result.generator_cpu_s = sum(generator.values())
        deadline = time.monotonic() + 120
        while result.samples[-1].backlog > 0 and time.monotonic() < deadline:
            time.sleep(1.0)
            sample(started, loaded=False)
    return result
