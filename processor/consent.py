"""The consent step: each stored observation's secondary-use eligibility, decided after it is
stored, in a transaction of its own.

Direct care never waits on secondary use. The transaction that stores readings and alerts
only queues the new observations in `consent_pending` (`processor.sink`); this step takes
them from there, decides each against the consent version in force at that moment, writes
the decision with that version (`reading_consent`) and copies eligible, clean observations,
clamped to the plausible range, into `research_readings` (which feeds the hourly rollup), and
deletes them from the queue: all in one transaction, with short lock and statement timeouts.
If that transaction fails (a lock held on the consent tables, a failing trigger, the database
away) it rolls back whole: nothing reaches research, the observations stay queued, and the
step tries again later (fail closed, never dropped).

Consent state comes from a `ConsentCache` (`telehealth.storage.consent_cache`), brought up
to the consent clock inside the step's transaction before any decision: nothing is ever
decided against stale consent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from prometheus_client import Counter, Histogram
from psycopg_pool import AsyncConnectionPool

from telehealth.codes import CODES
from telehealth.consent import eligible_purposes
from telehealth.storage import consent as consent_store
from telehealth.storage.consent_cache import ConsentCache
from telehealth.storage.db import local_timeouts

log = logging.getLogger(__name__)

DECIDED = Counter("telehealth_processor_consent_decisions", "Observations given a consent decision")
ELIGIBLE = Counter("telehealth_processor_research_rows", "Eligible observation-purpose rows", ["purpose"])
FAILURES = Counter(
    "telehealth_processor_consent_step_failures",
    "Consent steps rolled back (lock or statement timeout, error): their observations wait",
)
WAITED = Histogram(
    "telehealth_processor_consent_wait_seconds",
    "From a transaction's observations stored until their consent decision committed"
    " (one sample per storing transaction and step)",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
)

Conn = psycopg.AsyncConnection[Any]

#: observations decided per transaction at most; a backlog is worked off in such steps
STEP_ROWS = 5000
#: the queue is also looked at this often without a wake-up (what another processor, or this
#: one before a restart, left undecided)
IDLE_CHECK_S = 1.0
#: steps start at most this often when woken: under a steady trickle of small batches, each
#: step then takes the observations of many (a step costs about six round trips, whatever its
#: size); research waits up to this much longer, direct care not at all
MIN_INTERVAL_S = 0.2
#: after a failed step, wait this long before the next (doubling up to `RETRY_MAX_S`)
RETRY_FIRST_S = 0.25
RETRY_MAX_S = 1.0
#: each code's plausible range: research values are clamped to it
PLAUSIBLE = {code: spec.plausible for code, spec in CODES.items()}


class ConsentStage:
    def __init__(
        self,
        cache: ConsentCache,
        *,
        default_permit: bool = False,
        lock_timeout_ms: int = 250,
        statement_timeout_ms: int = 5000,
    ) -> None:
        self.cache = cache
        self._default_permit = default_permit
        self._lock_timeout_ms = lock_timeout_ms
        self._statement_timeout_ms = statement_timeout_ms
        #: set after a transaction queued observations: the step runs soon after
        self.wake = asyncio.Event()

    async def step(self, pool: AsyncConnectionPool) -> int:
        """Decide up to `STEP_ROWS` queued observations in one transaction; returns how many.

        Raises what the transaction raised (it rolled back: the observations stay queued)."""
        async with pool.connection() as conn, conn.transaction():
            await local_timeouts(conn, lock_ms=self._lock_timeout_ms, statement_ms=self._statement_timeout_ms)
            # The clock first: a lock on the consent tables stops the step before it takes anything.
            clock = await consent_store.clock_at(conn)
            pairs = await consent_store.pending_pairs(conn, STEP_ROWS)
            if not pairs:
                return 0
            return await self.decide(conn, pairs, clock)

    async def drain(self, pool: AsyncConnectionPool) -> int:
        """Steps until the queue is empty (as far as this processor can take from it)."""
        total = 0
        while (n := await self.step(pool)) > 0:
            total += n
            if n < STEP_ROWS:
                break
        return total

    async def run(self, pool: AsyncConnectionPool, stop: asyncio.Event) -> None:
        """Work off the queue whenever woken, and every `IDLE_CHECK_S`; after a failure, back
        off and retry, for as long as the processor runs."""
        delay = 0.0
        loop = asyncio.get_running_loop()
        started = -MIN_INTERVAL_S
        while not stop.is_set():
            if not delay:  # after a failure, retry as soon as the backoff is over
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), IDLE_CHECK_S)
                if (wait := started + MIN_INTERVAL_S - loop.time()) > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), wait)
            self.wake.clear()
            if stop.is_set():
                break
            started = loop.time()
            try:
                await self.drain(pool)
                delay = 0.0
            except Exception as exc:  # rolled back: everything stays queued, to be tried again
                FAILURES.inc()
                delay = min(max(RETRY_FIRST_S, delay * 2), RETRY_MAX_S)
                expected = isinstance(exc, psycopg.Error | OSError)
                log.warning(
                    "consent step failed (%s); research waits, retrying in %.2fs",
                    exc,
                    delay,
                    exc_info=not expected,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)

    async def decide(
        self, conn: Conn, pairs: list[tuple[UUID, str]], clock: tuple[int, datetime] | None = None
    ) -> int:
        """Decide the queued observations of these (patient, code) pairs, up to `STEP_ROWS`, in
        `conn`'s open transaction, as of `clock` (the consent clock and the moment, read in
        that transaction; read now if not given); returns how many were decided.

        All observations of one patient and code get the same decision at one moment, so it
        is made once per pair here and the database applies it to each row."""
        if not pairs:
            return 0
        # The clock and the moment of deciding in one statement, so one snapshot.
        seq, at = clock if clock is not None else await consent_store.clock_at(conn)
        await self.cache.catch_up(conn, seq)
        decisions = []
        for patient_id, code in pairs:
            version, purposes = eligible_purposes(
                self.cache.history(patient_id), code, at, default_permit=self._default_permit
            )
            decisions.append(consent_store.Decision(patient_id, code, version, purposes))
        done = await consent_store.decide_pending(conn, decisions, at, STEP_ROWS, PLAUSIBLE)
        DECIDED.inc(done.observations)
        for purpose, n in done.research.items():
            ELIGIBLE.labels(purpose).inc(n)
        for waited, _ in done.waits:  # once per storing transaction: its observations waited alike
            WAITED.observe(waited)
        return done.observations
