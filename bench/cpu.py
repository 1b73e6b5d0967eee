"""CPU time the services spend in a phase of the benchmark (and py-spy on them, if asked)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import psutil

from launcher.stack import Services


def cpu_seconds(services: Services) -> dict[str, float]:
    spent = {}
    for name, proc in services.procs.items():
        with contextlib.suppress(psutil.Error):
            times = psutil.Process(proc.pid).cpu_times()
            spent[name] = times.user + times.system
    return spent


@contextlib.contextmanager
def measured(services: Services, profile_dir: Path | None, prefix: str = "") -> Iterator[dict[str, float]]:
    """CPU seconds each running service spends inside the block (filled in on exit), with
    py-spy on the pipeline's services (not the API) when profiling."""
    spies = None
    if profile_dir is not None:
        from bench.profile import Spies

        spies = Spies(profile_dir, {prefix + n: p.pid for n, p in services.procs.items() if n != "api"})
    before = cpu_seconds(services)
    spent: dict[str, float] = {}
    try:
        yield spent
    finally:
        if spies is not None:
            spies.stop()
    spent.update({name: t - before[name] for name, t in cpu_seconds(services).items() if name in before})


def us_per(spent: dict[str, float], readings: int) -> dict[str, float]:
    return {name: 1e6 * seconds / max(1, readings) for name, seconds in spent.items()}
