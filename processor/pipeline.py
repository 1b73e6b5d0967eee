"""One batch through the processor's stages.

    decode -> resolve device -> normalise + quality (artefacts) -> store (sink) -> alert engine

then, in a transaction of its own that direct care never waits for, the consent step
(`processor.consent`: eligibility per purpose, with the consent version used).

A batch's database writes share one transaction, except that the readings of patients who
may have an urgent alert in it are normalised, stored and alerted on first, in a transaction
of their own (`urgent_first`), before the rest of the batch is even normalised. The caller
commits Kafka offsets only after `process` returns, so a crash anywhere replays the batch and
idempotency absorbs what already landed.

`express` does the same for records taken while a batch is still in flight
(`processor.ahead`): an urgent patient with nothing in that batch has their readings stored
and alerted on at once, beside it; the records stay in the next batch, where they are
duplicates.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple
from uuid import UUID

from aiokafka.structs import ConsumerRecord
from prometheus_client import Counter
from psycopg_pool import AsyncConnectionPool

from processor.alerts import store as alert_store
from processor.alerts.artefact import ArtefactFilter
from processor.alerts.device import DeviceReport, status_actions
from processor.alerts.engine import ThresholdEngine, alarmable
from processor.alerts.outbox import Outbox
from processor.alerts.rules import rules_for
from processor.alerts.trend import LEVEL_CODE, ROC_CODE, TrendTracker, fit_for_trend
from processor.consent import ConsentStage
from processor.decode import Batch, LetterAt, decode, record_letter
from processor.normalise import NormalisedObservation, normalise
from processor.sink import ReadingSink
from processor.urgent import UrgentGuess, urgent_first
from telehealth.contracts import AcceptedReading, DeadLetter, Reason, StatusEvent
from telehealth.settings import Settings
from telehealth.storage import dead_letters, devices, trends
from telehealth.storage.consent_cache import ConsentCache
from telehealth.storage.devices import CachedRegistry, DeviceEntry
from telehealth.thresholds import Thresholds

log = logging.getLogger(__name__)

STORED = Counter("telehealth_processor_readings_stored", "Readings stored for the first time")
DUPLICATES = Counter("telehealth_processor_duplicates", "Readings already stored (redelivery, replay)")
DEAD = Counter("telehealth_processor_dead_letters", "Dead letters recorded", ["reason"])
#: readings remembered as stored ahead, at most (a bound for metrics only: see `process`)
STORED_AHEAD_MAX = 100_000
EXPRESS = Counter(
    "telehealth_processor_express_commits",
    "Urgent patients' readings stored ahead, while a batch was in flight",
)


class Prepared(NamedTuple):
    """A reading of a known device, normalised and checked for artefacts, not yet stored."""

    reading: AcceptedReading
    patient_id: UUID
    observations: list[NormalisedObservation]
    #: what the artefact filter derived for the engine alone (never stored)
    derived: list[NormalisedObservation]


@dataclass(frozen=True)
class Report:
    received: int
    stored: int
    duplicates: int
    dead_letters: int
    alerts: int


def owner(reading: AcceptedReading, entries: dict[str, DeviceEntry | None]) -> DeviceEntry | None:
    """The registry entry the reading is attributed by: None if its device is unknown or
    revoked, or was given to its current patient after the reading was received."""
    entry = entries[reading.device_id]
    return None if entry is None or entry.predates(reading.received_at) else entry


def consent_stage(settings: Settings) -> ConsentStage:
    """The consent step as the settings configure it."""
    return ConsentStage(
        ConsentCache(),
        default_permit=settings.consent_default == "permit",
        lock_timeout_ms=settings.consent_lock_timeout_ms,
        statement_timeout_ms=settings.consent_statement_timeout_ms,
    )


class Pipeline:
    """Built with its collaborators: the database pool, the device registry, the alert outbox
    (published as soon as an urgent part commits; None: nothing publishes here, as in tests
    and tools) and the consent step (by default one from `settings`). It calls down into them,
    never back up into the service."""

    def __init__(
        self,
        settings: Settings,
        pool: AsyncConnectionPool,
        registry: CachedRegistry,
        *,
        outbox: Outbox | None = None,
        consent: ConsentStage | None = None,
    ) -> None:
        self._settings = settings
        self._pool = pool
        self._registry = registry
        self._outbox = outbox
        self._engine = ThresholdEngine(rules_for(Thresholds(warning_after=settings.alert_warning_after)))
        self._urgent = UrgentGuess(self._engine.may_be_urgent)
        self._trends = TrendTracker()
        self._artefacts = ArtefactFilter()
        self._late_after = timedelta(seconds=settings.late_after_s)
        self._future = timedelta(seconds=settings.future_tolerance_s)
        self.consent = consent if consent is not None else consent_stage(settings)
        #: (device_id, seq) stored by `express`, until the batch that holds them counts them
        self._stored_ahead: set[tuple[str, int]] = set()

    async def process(self, records: list[ConsumerRecord[Any, Any]], decoded: Batch | None = None) -> Report:
        """Store and alert on `records` (their consent is decided after, by `consent`);
        `decoded` is what `decode` made of them, if the caller decoded them ahead (not changed)."""
        batch = decoded.copy() if decoded is not None else decode(records, self._settings)
        await self._registry.current()  # every registry change committed before these were accepted
        entries = self._entries(batch.readings)

        def patient_of(device_id: str) -> UUID | None:
            entry = entries.get(device_id)
            return entry.patient_id if entry is not None else None

        stored = alerts = orphans = 0
        parts = urgent_first(batch.readings, patient_of, self._urgent)
        for i, readings in enumerate(parts):
            rest = i == len(parts) - 1  # letters, statuses and device reports go with the rest
            unknown = [self._refused(r) for r in readings if owner(r, entries) is None]
            batch.letters += unknown
            orphans += len(unknown)
            prepared = self._prepare([r for r in readings if owner(r, entries) is not None], entries)
            reports = self._device_reports(batch) if rest else []
            fresh, touched = await self._commit(prepared, batch if rest else Batch(), reports)
            stored += len(fresh)
            alerts += touched
            if touched and not rest and self._outbox is not None:
                # before the rest of the batch: the alerts topic need not wait for it either
                await self._outbox.publish()
        # Readings stored ahead by `express` come back here; they are not redeliveries.
        ahead = {(r.device_id, r.seq) for r in batch.readings} & self._stored_ahead
        self._stored_ahead -= ahead
        stored += len(ahead)
        duplicates = len(batch.readings) - orphans - stored
        STORED.inc(stored - len(ahead))
        DUPLICATES.inc(duplicates)
        for lt in batch.letters:
            DEAD.labels(lt.letter.reason.value).inc()
        return Report(len(records), stored, duplicates, len(batch.letters), alerts)

    async def express(
        self, held: Batch, taken: Sequence[AcceptedReading], busy_devices: Collection[str]
    ) -> int:
        """Store and alert on the held readings of every patient with a reading in `taken` that
        may be urgent, in one transaction, unless the patient has a device in the batch in flight
        (`busy_devices`): their readings must commit after that batch's. Returns alerts touched.

        `held` is everything taken since the batch in flight, in order, so an urgent patient's
        earlier held readings are stored first (the artefact filter and the trend need them).
        Nothing is removed from `held`: the next batch finds these readings already stored.
        """
        maybe = [r for r in taken if self._urgent(r)]
        if not maybe:
            return 0  # the common case: no registry round trip for the guess
        await self._registry.current()
        owners = self._entries(maybe)
        urgent = {e.patient_id for r in maybe if (e := owner(r, owners)) is not None}
        if urgent:
            busy = self._entries([*busy_devices])
            urgent -= {e.patient_id for e in busy.values() if e is not None}
        if not urgent:
            return 0
        entries = self._entries(held.readings)
        readings = [
            r for r in held.readings if (e := owner(r, entries)) is not None and e.patient_id in urgent
        ]
        fresh, touched = await self._commit(self._prepare(readings, entries), Batch(), [])
        STORED.inc(len(fresh))
        if len(self._stored_ahead) > STORED_AHEAD_MAX:  # taken by another processor since: forget
            self._stored_ahead.clear()
        self._stored_ahead |= fresh
        EXPRESS.inc()
        return touched

    def _entries(self, items: Sequence[AcceptedReading | str]) -> dict[str, DeviceEntry | None]:
        """Registry entries of the readings' (or the named) devices; None: not provisioned or
        revoked (nothing of theirs is attributed to anyone). Call `current` first: it loads
        every change committed before it, and the gateway accepted these readings before that,
        so the cache then holds every device they may name (no look-up per device)."""
        entries: dict[str, DeviceEntry | None] = {}
        for item in items:
            device_id = item if isinstance(item, str) else item.device_id
            if device_id not in entries:
                entry = self._registry.peek(device_id)
                entries[device_id] = entry if entry is not None and not entry.revoked else None
        return entries

    def _prepare(
        self, readings: list[AcceptedReading], entries: dict[str, DeviceEntry | None]
    ) -> list[Prepared]:
        """Normalise and check for artefacts the readings of known devices (others are skipped)."""
        prepared: list[Prepared] = []
        for reading in readings:
            entry = entries[reading.device_id]
            if entry is None:
                continue
            normalised = normalise(
                reading,
                entry.patient_id,
                late_after=self._late_after,
                future_tolerance=self._future,
                device_kind=entry.kind,
            )
            marked = self._artefacts.mark(normalised, reading.context)
            prepared.append(Prepared(reading, entry.patient_id, marked.observations, marked.derived))
        return prepared

    async def _commit(
        self, part: list[Prepared], extras: Batch, reports: list[DeviceReport]
    ) -> tuple[set[tuple[str, int]], int]:
        """One transaction: store `part` (queueing its consent decisions), alert on it, with the
        letters and statuses of `extras`; returns (keys of the readings newly stored, alerts
        touched). Nothing here touches the consent tables."""
        sink = ReadingSink()
        observations: list[NormalisedObservation] = []
        flagged: list[NormalisedObservation] = []
        for p in part:
            if sink.add(p.reading, p.patient_id, p.observations):
                observations.extend(p.observations)
                flagged.extend(p.derived)
        buffered = len(sink)
        async with self._pool.connection() as conn, conn.transaction():
            fresh = await sink.flush(conn)
            await store_letters(conn, extras.letters)
            await _apply_statuses(conn, extras.statuses)
            new_obs, for_engine = observations, flagged  # for_engine: never stored, never research data
            if len(fresh) < buffered:  # some were stored before (a replay): alert on the new only
                new_obs = [o for o in observations if (o.device_id, o.seq) in fresh]
                for_engine = [o for o in flagged if (o.device_id, o.seq) in fresh]
            patients = {o.patient_id for o in new_obs + for_engine if alarmable(o)}
            patients |= {r.patient_id for r in reports}
            state = await alert_store.alert_state(conn, list(patients))
            await self._seed_trends(conn, new_obs)
            derived = self._trends.derive(new_obs)
            await trends.store(conn, _newest_trends(derived))
            for_engine += derived
            actions = self._engine.evaluate(new_obs + for_engine, state.open, state.rules, state.episodes)
            actions += status_actions(reports, state.open, state.sources)
            touched = await alert_store.apply(conn, actions)
        if fresh:
            self.consent.wake.set()
        return fresh, len(touched)

    async def poison(self, record: ConsumerRecord[Any, Any], error: Exception) -> None:
        """Record one record that cannot be processed as a dead letter, in its own transaction."""
        detail = f"processor could not process the record: {type(error).__name__}: {error}"
        letter = record_letter(record, Reason.INTERNAL_ERROR, detail, kind="poison")
        async with self._pool.connection() as conn, conn.transaction():
            await store_letters(conn, [letter])
        DEAD.labels(Reason.INTERNAL_ERROR.value).inc()

    def _device_reports(self, batch: Batch) -> list[DeviceReport]:
        """Status messages, and the battery level readings carry, as input to the device rules
        (from the registry's cache: `process` brought it up to date, as for `_entries`)."""
        reports = []
        for s in batch.statuses:
            entry = self._registry.peek(s.device_id)
            if entry is not None:
                reports.append(
                    DeviceReport(entry.patient_id, s.device_id, s.received_at, s.state, s.battery_pct)
                )
        for r in batch.readings:
            entry = self._registry.peek(r.device_id)
            if entry is not None and r.battery_pct is not None:
                reports.append(
                    DeviceReport(entry.patient_id, r.device_id, r.received_at, None, r.battery_pct)
                )
        return reports

    async def _seed_trends(self, conn: Any, observations: list[NormalisedObservation]) -> None:
        """After a restart, rebuild a patient's CGM window from every reading stored before this
        batch, late ones included (implausible, future and artefact ones are not data)."""
        first: dict[UUID, datetime] = {}
        for o in observations:
            if fit_for_trend(o) and not self._trends.known(o.patient_id):
                first[o.patient_id] = min(o.measured_at, first.get(o.patient_id, o.measured_at))
        for patient_id, before in first.items():
            window = await trends.cgm_before(conn, patient_id, before - self._trends.window, before)
            self._trends.seed(patient_id, window)

    def _refused(self, reading: AcceptedReading) -> LetterAt:
        """The dead letter of a reading no patient may have: its device was revoked after the
        gateway accepted it, or is not provisioned."""
        entry = self._registry.peek(reading.device_id)
        if entry is not None and not entry.revoked and entry.predates(reading.received_at):
            letter = DeadLetter.capture(
                Reason.REASSIGNED_DEVICE,
                f"device {reading.device_id!r} was given to another patient at {entry.assigned_at}, after"
                " this reading was received: it is not theirs (checked at the processor)",
                source_topic=self._settings.readings_topic,
                device_id=reading.device_id,
                received_at=reading.received_at,
                raw=reading.model_dump_json().encode(),
            )
            return LetterAt(letter, f"reassigned:{reading.device_id}:{reading.seq}")
        if entry is not None and entry.revoked:
            letter = DeadLetter.capture(
                Reason.REVOKED_DEVICE,
                f"device {reading.device_id!r} has been revoked (checked at the processor)",
                source_topic=self._settings.readings_topic,
                device_id=reading.device_id,
                received_at=reading.received_at,
                raw=reading.model_dump_json().encode(),
            )
            return LetterAt(letter, f"revoked:{reading.device_id}:{reading.seq}")
        letter = DeadLetter.capture(
            Reason.UNKNOWN_DEVICE,
            f"device {reading.device_id!r} is not provisioned (checked at the processor)",
            source_topic=self._settings.readings_topic,
            device_id=reading.device_id,
            received_at=reading.received_at,
            raw=reading.model_dump_json().encode(),
        )
        return LetterAt(letter, f"orphan:{reading.device_id}:{reading.seq}")


async def store_letters(conn: Any, letters: list[LetterAt]) -> None:
    if not letters:
        return
    await dead_letters.store(conn, [(lt.letter, lt.origin) for lt in letters])


async def _apply_statuses(conn: Any, statuses: list[StatusEvent]) -> None:
    if not statuses:
        return
    await devices.apply_states(conn, [(s.state, s.received_at, s.battery_pct, s.device_id) for s in statuses])


def _newest_trends(derived: list[NormalisedObservation]) -> list[trends.Trend]:
    """The filtered level and rate the trend derived, one row per device: its newest."""
    pairs: dict[tuple[str, int], dict[str, NormalisedObservation]] = {}
    for o in derived:
        if o.code in (LEVEL_CODE, ROC_CODE):
            pairs.setdefault((o.device_id, o.seq), {})[o.code] = o
    newest: dict[str, trends.Trend] = {}
    for (device_id, seq), both in pairs.items():
        level, rate = both.get(LEVEL_CODE), both.get(ROC_CODE)
        if level is None or rate is None:
            continue
        row = trends.Trend(device_id, seq, level.patient_id, level.measured_at, level.value, rate.value)
        if device_id not in newest or row.measured_at >= newest[device_id].measured_at:
            newest[device_id] = row
    return list(newest.values())
