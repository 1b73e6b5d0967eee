"""Nightscout API v1 uploads: `POST /api/v1/entries` and `POST /api/v1/devicestatus`.

Each entry becomes the reading an MQTT device would publish (`telehealth.nightscout`) and is
judged by the gateway's own checks (`telehealth.checks`); what they accept goes to the same
Kafka topic, what they refuse becomes a dead letter with its reason and the entry's own bytes.
The upload is answered only once the store holds every reading and dead letter it sent, with
the stored entries (Nightscout's response shape): Kafka's acknowledgement alone is not kept by
the embedded broker through a crash. If Kafka does not take them, or the store does not hold
them within `upload_store_wait_s`, the answer is 503 and the app uploads again (a repeat is
stored once: see `telehealth.nightscout` for the identity).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import psycopg
from fastapi import APIRouter, HTTPException, Request
from prometheus_client import Counter
from psycopg_pool import AsyncConnectionPool

from dashboard_api.deps import ConnDep
from dashboard_api.intake import Intake, IntakeUnavailable
from dashboard_api.nightscout_auth import UploaderActor, UploaderDep
from dashboard_api.problems import documented
from telehealth.bounds import escape_unstorable
from telehealth.checks import check_readings, check_status
from telehealth.codes import CODES
from telehealth.contracts import AcceptedReading, DeadLetter, Reason, StatusEvent, accept, accepted_json
from telehealth.nightscout import EntryProblem, to_entry, to_reading, uploader_battery
from telehealth.settings import Settings
from telehealth.storage import nightscout_documents as documents
from telehealth.storage import spooled
from telehealth.storage.db import checkout
from telehealth.storage.devices import DeviceEntry
from telehealth.topics import readings_topic, status_topic
from telehealth.treatments import TreatmentProblem, check_document, document_identifier

router = APIRouter(prefix="/api/v1", tags=["nightscout"])

#: entries in one upload (a day of 5-minute CGM readings is 288)
MAX_ENTRIES = 2000
ENTRIES_SOURCE = "nightscout:/api/v1/entries"
STATUS_SOURCE = "nightscout:/api/v1/devicestatus"

ACCEPTED = Counter("telehealth_nightscout_entries_accepted", "Nightscout entries forwarded to Kafka")
REJECTED = Counter("telehealth_nightscout_dead_letters", "Nightscout documents dead-lettered", ["reason"])

_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: documented("the body is not a JSON object or array of them, or has too many entries"),
    401: documented("no credential, or an unknown or revoked one"),
    429: documented("too many requests or failed attempts"),
    503: documented(
        "Kafka is not configured or did not accept the upload, or it was not stored in time; upload again"
    ),
}


def _not_json(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


async def _documents(request: Request) -> list[Any]:
    try:
        body = json.loads(await request.body(), parse_constant=_not_json)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise HTTPException(400, f"the body is not JSON: {type(exc).__name__}") from exc
    items = body if isinstance(body, list) else [body]
    if not all(isinstance(item, dict) for item in items):
        raise HTTPException(400, "the body must be a JSON object or an array of objects")
    if len(items) > MAX_ENTRIES:
        raise HTTPException(400, f"{len(items)} documents in one upload; the limit is {MAX_ENTRIES}")
    return items


def _raw(item: Any) -> bytes:
    return json.dumps(item, separators=(",", ":")).encode()


class _Upload:
    """What one request sends to Kafka, built with the gateway's checks."""

    def __init__(self, settings: Settings, uploader: UploaderActor) -> None:
        self.settings = settings
        self.device_id = uploader.device_id
        entry = DeviceEntry(uploader.device_id, uploader.patient_id, "uploader", False)
        self.lookup = {uploader.device_id: entry}.get
        self.now = datetime.now(UTC)
        self.records: list[tuple[str, bytes, bytes]] = []
        self.letters = 0
        self.accepted = 0
        # what the store must hold before the upload is answered
        self.readings: list[tuple[str, int]] = []
        self.letter_ids: list[str] = []

    def letter(self, source: str, reason: Any, detail: str, raw: bytes) -> None:
        letter = DeadLetter.capture(
            reason, detail, source_topic=source, device_id=self.device_id, received_at=self.now, raw=raw
        )
        REJECTED.labels(letter.reason.value).inc()
        self.letters += 1
        assert letter.letter_id is not None
        self.letter_ids.append(letter.letter_id)
        self.records.append(
            (self.settings.deadletter_topic, self.device_id.encode(), letter.model_dump_json().encode())
        )

    def entry(self, item: Any) -> dict[str, Any]:
        """The answer for one entry: the stored entry, or why it became a dead letter."""
        try:
            document = to_reading(item, self.device_id)
        except EntryProblem as problem:
            return self.refused(item, problem.reason, problem.detail)
        verdict = check_readings(readings_topic(self.device_id), _raw(document), self.now, self.lookup)
        for rejected in verdict.rejected:  # keep the entry as the client sent it, not our mapping
            return self.refused(item, rejected.reason, rejected.detail)
        reading = verdict.accepted[0]
        value = accepted_json(reading, verdict.received_at)
        self.records.append((self.settings.readings_topic, self.device_id.encode(), value))
        self.readings.append((reading.device_id, reading.seq))
        self.accepted += 1
        return _echo(accept(reading, verdict.received_at))

    def refused(self, item: Any, reason: Reason, detail: str) -> dict[str, Any]:
        """Dead-letter the entry and answer it, marked, so the answer has one element per
        entry sent (Loop counts them) and the app does not upload it again for ever."""
        raw = _raw(item)
        self.letter(ENTRIES_SOURCE, reason, detail, raw)
        answer: dict[str, Any] = {"_id": hashlib.sha1(raw).hexdigest()[:24]}
        for field in ("type", "date", "dateString"):
            value = item.get(field)
            if isinstance(value, str):
                answer[field] = escape_unstorable(value, 64)
            elif isinstance(value, int | float) and not isinstance(value, bool):
                answer[field] = value
        answer.update(stored=False, dead_letter=Reason(reason).value, detail=escape_unstorable(detail, 500))
        return answer

    def status(self, item: Any) -> StatusEvent | None:
        battery = uploader_battery(item)
        if battery is None:
            return None  # no uploader battery: the document is kept, no device status
        if isinstance(battery, float) and battery.is_integer():
            battery = int(battery)
        payload = json.dumps({"state": "online", "battery_pct": battery}).encode()
        result = check_status(status_topic(self.device_id), payload, self.now, self.lookup)
        if isinstance(result, DeadLetter):
            self.letter(STATUS_SOURCE, result.reason, result.detail, _raw(item))
            return None
        self.records.append(
            (self.settings.status_topic, self.device_id.encode(), result.model_dump_json().encode())
        )
        return result

    async def send(self, intake: Intake, pool: AsyncConnectionPool) -> None:
        """Return once Kafka took every record and the store holds the readings and letters
        among them; 503 otherwise (statuses are not waited for: a later one replaces them)."""
        try:
            await intake.send_all(self.records)
        except IntakeUnavailable as exc:
            raise HTTPException(503, str(exc), headers={"Retry-After": "5"}) from exc
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.upload_store_wait_s
        delay = 0.02
        while True:
            async with checkout(pool) as conn:
                left = await spooled.missing(conn, self.readings, self.letter_ids)
            if not left:
                return
            if loop.time() + delay > deadline:
                detail = (
                    f"{left} record(s) of the upload not stored yet; upload again (a repeat is stored once)"
                )
                raise HTTPException(503, detail, headers={"Retry-After": "5"})
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)


def _echo(reading: AcceptedReading) -> dict[str, Any]:
    obs = reading.observations[0]
    return to_entry(
        device_id=reading.device_id,
        seq=reading.seq,
        measured_at=reading.measured_at,
        value_mmol=CODES[obs.code].to_canonical(obs.value, obs.unit),
        source=obs.source,
        context=reading.context,
    )


@router.post("/entries", responses=_RESPONSES)
@router.post("/entries.json", responses=_RESPONSES, include_in_schema=False)
async def post_entries(request: Request, uploader: UploaderDep) -> list[dict[str, Any]]:
    """Nightscout entries (`sgv`, `mbg`), one object or an array; answers one element per entry
    sent, in order: the stored entry, or the refused one marked `stored: false` with its
    dead-letter reason. Refused entries are dead letters (reason and the entry's bytes), not
    errors: an app that got an error, or fewer answers than entries, would upload again for ever."""
    items = await _documents(request)
    upload = _Upload(request.app.state.settings, uploader)
    answers = [upload.entry(item) for item in items]
    await upload.send(request.app.state.intake, request.app.state.pool)
    ACCEPTED.inc(upload.accepted)
    return answers


async def store_devicestatus(
    conn: psycopg.AsyncConnection[Any], upload: _Upload, uploader: UploaderActor, item: Any
) -> dict[str, Any]:
    """Keep one devicestatus document (the uploader's battery also becomes a device status);
    answer it stored, or refused and dead-lettered."""
    try:
        at = check_document(item, upload.now)
    except TreatmentProblem as problem:
        raw = _raw(item)
        upload.letter(STATUS_SOURCE, problem.reason, problem.detail, raw)
        return {
            "_id": hashlib.sha1(raw).hexdigest()[:24],
            "stored": False,
            "dead_letter": problem.reason.value,
            "detail": escape_unstorable(problem.detail, 500),
        }
    upload.status(item)
    kept = await documents.store(
        conn, uploader.patient_id, uploader.device_id, "devicestatus", document_identifier(item), at, item
    )
    return kept.document


@router.post("/devicestatus", responses=_RESPONSES)
@router.post("/devicestatus.json", responses=_RESPONSES, include_in_schema=False)
async def post_devicestatus(request: Request, conn: ConnDep, uploader: UploaderDep) -> list[dict[str, Any]]:
    """Device status documents (pump, loop, uploader), kept as uploaded 30 days and served back
    on reads; the uploader phone's battery also becomes the uploader's device status (so
    `battery_low` opens as for any device). Answers one element per document, in order."""
    items = await _documents(request)
    upload = _Upload(request.app.state.settings, uploader)
    answers = [await store_devicestatus(conn, upload, uploader, item) for item in items]
    await conn.commit()
    if upload.records:
        await upload.send(request.app.state.intake, request.app.state.pool)
    return answers
