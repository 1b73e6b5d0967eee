"""The bench waits for its load workers as long as they take, and not for a dead one."""

from __future__ import annotations

import multiprocessing as mp
import time
from typing import Any

import pytest

from bench.load import collect

_ctx = mp.get_context("fork")


def _late(out: Any, delay: float, value: int) -> None:
    time.sleep(delay)
    out.put(value)


def _dies() -> None:
    raise SystemExit(3)


def test_a_late_worker_is_waited_for() -> None:
    out: Any = _ctx.Queue()
    procs = [_ctx.Process(target=_late, args=(out, d, v)) for d, v in ((0.0, 1), (0.5, 2))]
    for p in procs:
        p.start()
    assert sorted(collect(out, procs, poll_s=0.1)) == [1, 2]  # longer than one poll
    for p in procs:
        p.join()


def test_a_dead_worker_fails_the_wait() -> None:
    out: Any = _ctx.Queue()
    procs = [_ctx.Process(target=_late, args=(out, 0.0, 1)), _ctx.Process(target=_dies)]
    for p in procs:
        p.start()
    with pytest.raises(RuntimeError, match="exit codes \\[3\\]"):
        collect(out, procs, poll_s=0.1)


def test_a_worker_that_ends_without_a_result_fails_the_wait() -> None:
    out: Any = _ctx.Queue()
    procs = [_ctx.Process(target=time.sleep, args=(0.0,))]
    procs[0].start()
    with pytest.raises(RuntimeError, match="without a result"):
        collect(out, procs, poll_s=0.1)
