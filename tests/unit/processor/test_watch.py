"""`fetcher_stopped` judges only a consumer with a fetch task, and only an ended one."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from processor.watch import fetcher_stopped


async def test_only_an_ended_fetch_task_counts_as_stopped() -> None:
    running: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    ended.set_result(None)
    assert not fetcher_stopped(SimpleNamespace())
    assert not fetcher_stopped(SimpleNamespace(_fetcher=SimpleNamespace(_fetch_task=None)))
    assert not fetcher_stopped(SimpleNamespace(_fetcher=SimpleNamespace(_fetch_task=running)))
    assert fetcher_stopped(SimpleNamespace(_fetcher=SimpleNamespace(_fetch_task=ended)))
    running.cancel()
