"""Password checks run argon2 on worker threads: the event loop keeps serving meanwhile."""

from __future__ import annotations

import asyncio
import time

from telehealth.security import check_password, hash_secret, verify_secret


async def test_argon2_runs_off_the_event_loop() -> None:
    hashed = hash_secret("a password")
    began = time.perf_counter()
    assert verify_secret("a password", hashed)
    one_verify = time.perf_counter() - began

    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.005)  # the ticker that shows the loop still runs
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticking = asyncio.create_task(ticker())
    results = await asyncio.gather(
        *(check_password("a password", hashed) for _ in range(4)), check_password("x", None)
    )
    stop.set()
    await ticking
    assert results == [True, True, True, True, False]
    # On the loop, the ticker would stall for a whole verification (~0.1-0.5 s) at a time.
    assert max(gaps) < 0.5 * one_verify, (max(gaps), one_verify)


async def test_unknown_users_cost_a_verification_too() -> None:
    hashed = hash_secret("a password")
    await check_password("warm", None)  # the dummy hash is made once

    async def timed(stored: str | None) -> float:
        began = time.perf_counter()
        await check_password("wrong", stored)
        return time.perf_counter() - began

    known = sorted([await timed(hashed) for _ in range(3)])[1]
    unknown = sorted([await timed(None) for _ in range(3)])[1]
    assert unknown >= 0.5 * known, (known, unknown)
