"""The consent cache's listener: a committed change reaches it by notification, and it stops
on its `stop` event alone (a cancellation Python 3.11 swallowed once left it waiting for good,
and the processor's next Kafka consumer with it)."""

import asyncio
from typing import Any

import psycopg

from telehealth.consent import Provision, Purpose
from telehealth.settings import Settings
from telehealth.storage.consent import save_consent
from telehealth.storage.consent_cache import ConsentCache
from tests.conftest import eventually
from tests.research_support import cohort_patient

GLUCOSE = [Provision(purpose=Purpose.RESEARCH, decision="permit", codes=["glucose"])]


async def test_a_change_arrives_by_notification_and_stop_alone_ends_the_listener(
    db: psycopg.AsyncConnection[Any], settings: Settings
) -> None:
    assert settings.database_url
    cache, stop = ConsentCache(), asyncio.Event()
    listening = asyncio.create_task(cache.listen(settings.database_url, stop))
    try:

        async def caught_up() -> bool:
            return cache.seq >= 0

        await eventually(caught_up)  # connected, listening and caught up
        patient = await cohort_patient(db, "consent-listener")
        await save_consent(db, patient, GLUCOSE, False, "admin", "admin", None)

        async def seen() -> bool:
            return bool(cache.history(patient))

        await eventually(seen, timeout=10)  # no reader synced it: the notification did
        stop.set()
        await asyncio.wait({listening}, timeout=5)
        assert listening.done() and not listening.cancelled(), "ended by stop, not cancelled"
    finally:
        listening.cancel()
