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
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from prometheus_client import Counter, Histogram
from psycopg_pool import AsyncConnectionPool

from telehealth.codes import CODES
from telehealth.consent import eligible_purposes
from telehealth.storage import consent as consent_store
from telehealth.storage.bulk import Columns, copy_in
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
    "From an observation stored until its consent decision committed",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
)

Conn = psycopg.AsyncConnection[Any]

#: observations decided per transaction at most; a backlog is worked off in such steps
STEP_ROWS = 5000
#: the queue is also looked at this often without a wake-up (what another processor, or this
#: one before a restart, left undecided)
IDLE_CHECK_S = 1.0
#: after a failed step, wait this long before the next (doubling up to `RETRY_MAX_S`)
RETRY_FIRST_S = 0.25
RETRY_MAX_S = 1.0

DECISIONS = Columns(
    "reading_consent",
    (
        ("device_id", "text"),
        ("seq", "int8"),
        ("code", "text"),
        ("patient_id", "uuid"),
        ("measured_at", "timestamptz"),
        ("consent_version", "int4"),
        ("eligible", "text[]"),
        ("decided_at", "timestamptz"),
    ),
)
RESEARCH = Columns(
    "research_readings",
    (
        ("purpose", "text"),
        ("code", "text"),
        ("patient_id", "uuid"),
        ("measured_at", "timestamptz"),
        ("value", "float8"),
        ("consent_version", "int4"),
    ),
)


@dataclass(frozen=True)
class Pending:
    """A stored observation waiting for its decision (a row of `consent_pending`)."""

    device_id: str
    seq: int
    code: str
    patient_id: UUID
    measured_at: datetime
    value: float
    quality: list[str]
    stored_at: datetime


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
            taken = [Pending(*row) for row in await consent_store.take_pending(conn, STEP_ROWS)]
            if not taken:
                return 0
            await self.decide(conn, taken, clock)
        return len(taken)

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
        while not stop.is_set():
            if not delay:  # after a failure, retry as soon as the backoff is over
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), IDLE_CHECK_S)
            self.wake.clear()
            if stop.is_set():
                break
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
        self, conn: Conn, observations: list[Pending], clock: tuple[int, datetime] | None = None
    ) -> int:
        """Decide and record eligibility of `observations` in `conn`'s open transaction, as of
        `clock` (the consent clock and the moment, read in that transaction; read now if not
        given); returns research rows."""
        if not observations:
            return 0
        # The clock and the moment of deciding in one statement, so one snapshot.
        seq, at = clock if clock is not None else await consent_store.clock_at(conn)
        await self.cache.catch_up(conn, seq)
        decisions: list[tuple[Any, ...]] = []
        research: list[tuple[Any, ...]] = []
        eligible: dict[str, int] = {}
        # One decision per patient and code: nothing awaits in this loop, so the histories
        # and `at` cannot change while it runs.
        decided: dict[tuple[UUID, str], tuple[int | None, list[str]]] = {}
        for o in observations:
            key = (o.patient_id, o.code)
            if (known := decided.get(key)) is None:
                known = decided[key] = eligible_purposes(
                    self.cache.history(o.patient_id), o.code, at, default_permit=self._default_permit
                )
            version, purposes = known
            decisions.append((o.device_id, o.seq, o.code, o.patient_id, o.measured_at, version, purposes, at))
            if "implausible" in o.quality or "future" in o.quality:
                continue  # stored and decided, but never fed to research
            low, high = CODES[o.code].plausible
            value = min(max(o.value, low), high)
            for purpose in purposes:
                research.append((purpose, o.code, o.patient_id, o.measured_at, value, version))
                eligible[purpose] = eligible.get(purpose, 0) + 1
        async with conn.cursor() as cur:
            await copy_in(cur, DECISIONS, decisions)
            if research:
                # COPY fires the statement-level rollup trigger (plain PostgreSQL) once.
                await copy_in(cur, RESEARCH, research)
        DECIDED.inc(len(decisions))
        for purpose, n in eligible.items():
            ELIGIBLE.labels(purpose).inc(n)
        for o in observations:
            WAITED.observe(max(0.0, (at - o.stored_at).total_seconds()))
        return len(research)
