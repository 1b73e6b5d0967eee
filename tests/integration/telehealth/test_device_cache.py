"""The gateway's and processor's device cache against the real database: it refreshes only
changed rows, and still sees a change whose transaction committed after a refresh."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg

from telehealth.settings import Settings
from telehealth.storage.devices import CachedRegistry, reassign, revoke
from tests.factories import make_device, make_patient

TTL = 0.2


async def _settled(cache: CachedRegistry, device_id: str) -> Any:
    """The entry after one refresh. Not a wait for a condition: the time a refresh takes to be
    due must pass, and the late-commit tests check what one refresh does not see."""
    await asyncio.sleep(TTL * 1.5)
    return await cache.get(device_id)


async def test_revocation_and_reassignment_reach_the_cache_without_a_full_reload(
    settings: Settings, db: psycopg.AsyncConnection[Any]
) -> None:
    assert settings.database_url
    patient, other = await make_patient(db, "cache"), await make_patient(db, "cache")
    device = (await make_device(db, patient, "oximeter")).device_id
    cache = CachedRegistry(settings.database_url, ttl_s=TTL, full_every_s=3600)
    try:
        entry = await cache.get(device)  # the one full load
        assert entry is not None and not entry.revoked and entry.patient_id == patient
        await reassign(db, device, other)
        moved = await _settled(cache, device)
        assert moved is not None and moved.patient_id == other
        assert await revoke(db, device)
        gone = await _settled(cache, device)
        assert gone is not None and gone.revoked
    finally:
        await cache.close()


async def _after_a_late_commit(settings: Settings, db: psycopg.AsyncConnection[Any], overlap_s: float) -> Any:
    """A revocation written, then committed only after the cache refreshed past its stamp:
    the cache's entry once it has refreshed again."""
    assert settings.database_url
    patient = await make_patient(db, "cache")
    device = (await make_device(db, patient, "cgm")).device_id
    cache = CachedRegistry(settings.database_url, ttl_s=TTL, full_every_s=3600, overlap_s=overlap_s)
    try:
        assert await cache.get(device) is not None
        async with await psycopg.AsyncConnection.connect(settings.database_url) as slow:
            assert await revoke(slow, device)
            for _ in range(3):  # refreshes while the revocation is written but not committed
                entry = await _settled(cache, device)
                assert entry is not None and not entry.revoked
            await slow.commit()
        return await _settled(cache, device)
    finally:
        await cache.close()


async def test_a_change_committed_after_a_refresh_is_still_seen(
    settings: Settings, db: psycopg.AsyncConnection[Any]
) -> None:
    """The revocation's row is stamped when it is written; the transaction commits after the
    cache has refreshed past that stamp. The overlap margin makes the next refresh read it."""
    seen = await _after_a_late_commit(settings, db, overlap_s=30)
    assert seen is not None and seen.revoked


async def test_without_the_overlap_margin_the_late_commit_would_be_missed(
    settings: Settings, db: psycopg.AsyncConnection[Any]
) -> None:
    """The margin is what finds the late commit: with none, it is missed until the next full
    reload (so the test above can fail)."""
    entry = await _after_a_late_commit(settings, db, overlap_s=0)
    assert entry is not None and not entry.revoked
