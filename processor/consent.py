"""The consent filter stage: each newly stored observation's secondary-use eligibility.

Decided in the batch's own transaction against the consent version in force at that moment,
and written with that version (`reading_consent`); eligible, clean observations are copied,
clamped to the plausible range, into `research_readings`, which feeds the hourly rollup.

Consent state is cached in memory but never trusted blindly. Every change bumps
`consent_clock` in its own transaction (commit-ordered by the clock's row lock), and each
batch reads the clock inside its transaction: if the cache is behind, the missing changes
are loaded before any decision (the version check), so a committed change cannot be missed.
LISTEN consent_changed loads changes as soon as they commit, so the batch path rarely has to.
If the state cannot be brought up to date the batch fails and is retried: nothing is ever
decided against stale consent (fail closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any
from uuid import UUID

import psycopg
from prometheus_client import Counter

from processor.normalise import NormalisedObservation
from telehealth.codes import CODES
from telehealth.consent import ConsentVersion, eligible_purposes
from telehealth.storage import consent as consent_store
from telehealth.storage.bulk import Columns, copy_in

log = logging.getLogger(__name__)

DECIDED = Counter("telehealth_processor_consent_decisions", "Observations given a consent decision")
ELIGIBLE = Counter("telehealth_processor_research_rows", "Eligible observation-purpose rows", ["purpose"])

Conn = psycopg.AsyncConnection[Any]

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


class ConsentCache:
    """Every patient's consent history, current up to `seq` of the consent clock."""

    def __init__(self) -> None:
        self.seq = -1  # nothing loaded yet: the first sync loads everything
        self._histories: dict[UUID, list[ConsentVersion]] = {}
        self._lock = asyncio.Lock()

    def history(self, patient_id: UUID) -> list[ConsentVersion]:
        return self._histories.get(patient_id, [])

    async def sync(self, conn: Conn) -> int:
        """Bring the cache up to the clock as `conn` sees it; returns that clock value."""
        return await self.catch_up(conn, await consent_store.clock(conn))

    async def catch_up(self, conn: Conn, now: int) -> int:
        """Bring the cache up to clock value `now`, read on `conn` in its current transaction."""
        if now == self.seq:
            return now
        async with self._lock:
            if now > self.seq:
                changes = await consent_store.histories(conn, after_seq=max(self.seq, 0), upto_seq=now)
                for patient_id, versions in changes.items():
                    known = {v.version: v for v in self._histories.get(patient_id, [])}
                    known.update({v.version: v for v in versions})
                    self._histories[patient_id] = list(known.values())
                self.seq = now
        return now

    async def listen(self, url: str, stop: asyncio.Event) -> None:
        """Load changes as soon as they are committed; reconnects after a database outage."""
        while not stop.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                    await conn.execute("LISTEN consent_changed")
                    await self.sync(conn)  # whatever committed before LISTEN took effect
                    gen = conn.notifies()
                    async for _ in gen:
                        await self.sync(conn)
                        if stop.is_set():
                            break
            except psycopg.OperationalError as exc:
                log.warning("consent listener disconnected (%s); batches still check the clock", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)


class ConsentStage:
    def __init__(self, cache: ConsentCache, *, default_permit: bool = False) -> None:
        self.cache = cache
        self._default_permit = default_permit

    async def apply(self, conn: Conn, observations: list[NormalisedObservation]) -> int:
        """Decide and record eligibility of the batch's new observations; returns research rows."""
        if not observations:
            return 0
        # The clock and the moment of processing in one statement, so one snapshot.
        seq, at = await consent_store.clock_at(conn)
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
        return len(research)
