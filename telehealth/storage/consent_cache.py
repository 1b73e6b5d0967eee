"""Every patient's consent history in memory, never trusted blindly.

Every change bumps `consent_clock` in its own transaction (commit-ordered by the clock's row
lock). A reader brings the cache up to the clock its own transaction sees before deciding
anything (`sync`, or `catch_up` with a clock value it read itself): if the cache is behind,
the missing changes are loaded first, so a committed change cannot be missed. LISTEN
consent_changed (`listen`) loads changes as soon as they commit, so readers rarely wait.
If the state cannot be brought up to date the caller's transaction fails (fail closed).

The processor decides each stored reading against it; the API decides a research release's
cohort against it, instead of reading and parsing every patient's consent per release.
Memory grows with the patients who recorded consent (about 2.3 KB each with one version).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import psycopg

from telehealth.consent import ConsentVersion
from telehealth.storage import consent as consent_store

log = logging.getLogger(__name__)

Conn = psycopg.AsyncConnection[Any]


class ConsentCache:
    """Every patient's consent history, current up to `seq` of the consent clock."""

    def __init__(self) -> None:
        self.seq = -1  # nothing loaded yet: the first sync loads everything
        self._histories: dict[UUID, list[ConsentVersion]] = {}
        self._lock = asyncio.Lock()

    def history(self, patient_id: UUID) -> list[ConsentVersion]:
        return self._histories.get(patient_id, [])

    def items(self) -> Iterator[tuple[UUID, list[ConsentVersion]]]:
        """Every patient with a recorded consent, and their versions (unordered)."""
        return iter(self._histories.items())

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
        # Ends by `stop`, checked every second, never by cancellation alone: Python 3.11's
        # `wait_for` (inside psycopg's waits) can swallow a cancellation, and a listener that
        # missed one waited for a notification for good, keeping the processor's next Kafka
        # consumer from starting.
        while not stop.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(
                    url, autocommit=True, connect_timeout=5
                ) as conn:
                    await conn.execute("LISTEN consent_changed")
                    await self.sync(conn)  # whatever committed before LISTEN took effect
                    while not stop.is_set():
                        if [n async for n in conn.notifies(timeout=1.0, stop_after=1)]:
                            await self.sync(conn)
            except psycopg.OperationalError as exc:
                log.warning("consent listener disconnected (%s); readers still check the clock", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
