"""The consent filter stage: each newly stored observation's secondary-use eligibility.

Decided in the batch's own transaction against the consent version in force at that moment,
and written with that version (`reading_consent`); eligible, clean observations are copied,
clamped to the plausible range, into `research_readings`, which feeds the hourly rollup.

Consent state comes from a `ConsentCache` (`telehealth.storage.consent_cache`), brought up
to the consent clock inside the batch's transaction before any decision: nothing is ever
decided against stale consent (fail closed).
"""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

import psycopg
from prometheus_client import Counter

from processor.normalise import NormalisedObservation
from telehealth.codes import CODES
from telehealth.consent import eligible_purposes
from telehealth.storage import consent as consent_store
from telehealth.storage.bulk import Columns, copy_in
from telehealth.storage.consent_cache import ConsentCache

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
