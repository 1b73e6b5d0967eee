"""Nightscout treatments (carbs, insulin, basal, notes, exercise, site changes) as this system
keeps them. Pure: no I/O.

A treatment is what the patient or their loop did, not a measurement: it is stored per patient
beside the readings, shown with them and never judged by the alert rules. Apps re-upload
treatments as they do entries, so each has an identity: the client's own identifier
(`identifier` from API v3 clients such as AndroidAPS, `_id` when a client sets it, Loop's
`syncIdentifier`, xDrip+'s `uuid`), else, as Nightscout itself deduplicates, its event type and
time. A treatment crosses the same boundary as any device document (size, storable text,
nesting) and the readings' time window.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from telehealth.bounds import EARLIEST, MAX_AHEAD, escape_unstorable, storable
from telehealth.contracts import MAX_PAYLOAD_BYTES, Reason

#: client fields that name a treatment, most specific first
IDENTIFIER_FIELDS = ("identifier", "_id", "syncIdentifier", "uuid")
#: fields taken as numbers into their own columns (the rest stays in the document)
NUMBER_FIELDS = {"carbs": "carbs_g", "insulin": "insulin_u", "duration": "duration_min"}
#: a treatment document nests at most this deep (AndroidAPS nests an emulated bolus)
MAX_DEPTH = 6
#: and holds at most this many values
MAX_NODES = 2000
MAX_IDENTIFIER = 128
_HEX24 = re.compile(r"^[0-9a-f]{24}$")


class TreatmentProblem(Exception):
    """A document that is no storable treatment: the dead-letter reason and why."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Treatment:
    identifier: str
    event_type: str
    created_at: datetime
    carbs_g: float | None
    insulin_u: float | None
    basal_u_per_h: float | None
    duration_min: float | None
    notes: str | None
    entered_by: str | None
    document: dict[str, Any]


def _walk(document: dict[str, Any]) -> None:
    nodes = 0
    stack: list[tuple[Any, int, str]] = [(document, 1, "treatment")]
    while stack:
        value, depth, path = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise TreatmentProblem(Reason.CONTEXT_TOO_LARGE, f"more than {MAX_NODES} values")
        if isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                raise TreatmentProblem(
                    Reason.CONTEXT_TOO_LARGE, f"{path} nests deeper than {MAX_DEPTH} levels"
                )
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(key, str) and not storable(key):
                    raise TreatmentProblem(
                        Reason.UNSTORABLE_TEXT, f"a key in {path} contains NUL or a lone surrogate"
                    )
                stack.append((item, depth + 1, f"{path}.{escape_unstorable(str(key), 40)}"))
        elif isinstance(value, str) and not storable(value):
            raise TreatmentProblem(Reason.UNSTORABLE_TEXT, f"{path} contains NUL or a lone surrogate")
        elif isinstance(value, float) and not math.isfinite(value):
            raise TreatmentProblem(Reason.SCHEMA_INVALID, f"{path} is not a finite number")


def _time(value: Any, field: str) -> datetime:
    """Epoch ms (or s, as API v3 allows), or ISO 8601 with an offset."""
    if isinstance(value, bool):
        raise TreatmentProblem(Reason.SCHEMA_INVALID, f"{field}: not a time")
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 15:
        value = int(value)  # Loop sends `mills` as text
    if isinstance(value, int | float):
        ms = value * 1000 if value < 100_000_000_000 else value
        try:
            return datetime.fromtimestamp(ms / 1000, UTC)
        except (ValueError, OverflowError, OSError):
            raise TreatmentProblem(
                Reason.TIME_OUT_OF_WINDOW, f"{field}: {value} is not a plausible time"
            ) from None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise TreatmentProblem(
                Reason.SCHEMA_INVALID, f"{field}: {value[:40]!r} is not ISO 8601"
            ) from None
        if parsed.tzinfo is None:
            raise TreatmentProblem(Reason.SCHEMA_INVALID, f"{field}: a UTC offset is required")
        return parsed
    raise TreatmentProblem(Reason.SCHEMA_INVALID, f"{field}: not a time")


def when(document: dict[str, Any]) -> datetime:
    """`created_at`, else `timestamp`, `date`, `mills`: the first given is the time."""
    for field in ("created_at", "timestamp", "date", "mills"):
        if document.get(field) is not None:
            return _time(document[field], field)
    raise TreatmentProblem(Reason.SCHEMA_INVALID, "created_at (or date, timestamp, mills) is required")


def _number(document: dict[str, Any], field: str) -> float | None:
    value = document.get(field)
    if value is None:
        return None
    if isinstance(value, str):
        text = value
        try:
            value = float(text)
        except ValueError:
            raise TreatmentProblem(Reason.SCHEMA_INVALID, f"{field}: {text[:40]!r} is not a number") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TreatmentProblem(Reason.SCHEMA_INVALID, f"{field}: a finite number is required")
    if value < 0:
        raise TreatmentProblem(Reason.SCHEMA_INVALID, f"{field}: {value} is negative")
    return float(value)


def _text(document: dict[str, Any], field: str, limit: int = 4000) -> str | None:
    value = document.get(field)
    if value is None:
        return None
    return str(value)[:limit]


def derived_identifier(event_type: str, created_at: datetime) -> str:
    """Nightscout's own identity of a treatment without a client identifier: type and time."""
    ms = round(created_at.timestamp() * 1000)
    return "ns-" + hashlib.sha1(f"{event_type}|{ms}".encode()).hexdigest()[:24]


def public_id(identifier: str) -> str:
    """The `_id` served (Nightscout's 24-hex ObjectId shape): the client's own if it has it."""
    if _HEX24.match(identifier):
        return identifier
    return hashlib.sha1(identifier.encode()).hexdigest()[:24]


def check_document(document: Any, now: datetime) -> datetime:
    """The boundary of any Nightscout document that is no entry (treatment, devicestatus,
    profile): a JSON object of at most 64 KiB, storable text, bounded nesting, its time (or
    now, if it has none) in the readings' window. Answers the time."""
    if not isinstance(document, dict):
        raise TreatmentProblem(Reason.SCHEMA_INVALID, "a document must be a JSON object")
    size = len(json.dumps(document, separators=(",", ":")).encode())
    if size > MAX_PAYLOAD_BYTES:
        raise TreatmentProblem(
            Reason.OVERSIZED, f"document is {size} bytes, the limit is {MAX_PAYLOAD_BYTES}"
        )
    _walk(document)
    try:
        at = when(document)
    except TreatmentProblem as problem:
        if problem.reason != Reason.SCHEMA_INVALID or "required" not in problem.detail:
            raise
        return now
    _in_window(at, now)
    return at


def _in_window(at: datetime, now: datetime) -> None:
    if at < EARLIEST or at - now > MAX_AHEAD:
        raise TreatmentProblem(
            Reason.TIME_OUT_OF_WINDOW, f"{at.isoformat()} is before 2000 or more than a day ahead"
        )


def document_identifier(document: dict[str, Any]) -> str:
    """The client's identifier of a document, else a digest of the document itself (so the
    same document uploaded again is the same one)."""
    for name in IDENTIFIER_FIELDS:
        value = document.get(name)
        if isinstance(value, str | int) and not isinstance(value, bool) and value != "":
            return str(value)[:MAX_IDENTIFIER]
    raw = json.dumps(document, separators=(",", ":"), sort_keys=True).encode()
    return "ns-" + hashlib.sha1(raw).hexdigest()[:24]


def to_treatment(document: Any, now: datetime) -> Treatment:
    """The treatment one uploaded document is; raises `TreatmentProblem` for what is not one."""
    if not isinstance(document, dict):
        raise TreatmentProblem(Reason.SCHEMA_INVALID, "a treatment must be a JSON object")
    size = len(json.dumps(document, separators=(",", ":")).encode())
    if size > MAX_PAYLOAD_BYTES:
        raise TreatmentProblem(
            Reason.OVERSIZED, f"treatment is {size} bytes, the limit is {MAX_PAYLOAD_BYTES}"
        )
    _walk(document)
    event_type = document.get("eventType")
    if event_type is None or event_type == "":
        event_type = "<none>"
    if not isinstance(event_type, str) or len(event_type) > 64:
        raise TreatmentProblem(Reason.SCHEMA_INVALID, "eventType: text of at most 64 characters is required")
    created_at = when(document)
    _in_window(created_at, now)
    identifier = next(
        (
            str(document[f])
            for f in IDENTIFIER_FIELDS
            if isinstance(document.get(f), str | int) and document[f] != ""
        ),
        None,
    )
    if identifier is not None and len(identifier) > MAX_IDENTIFIER:
        raise TreatmentProblem(Reason.SCHEMA_INVALID, f"identifier: longer than {MAX_IDENTIFIER} characters")
    numbers = {column: _number(document, field) for field, column in NUMBER_FIELDS.items()}
    if numbers["duration_min"] is None and document.get("durationInMilliseconds") is not None:
        ms = _number(document, "durationInMilliseconds")
        numbers["duration_min"] = None if ms is None else ms / 60_000
    basal = _number(document, "absolute")
    if basal is None and event_type == "Temp Basal":
        basal = _number(document, "rate")
    return Treatment(
        identifier=identifier or derived_identifier(event_type, created_at),
        event_type=event_type,
        created_at=created_at,
        carbs_g=numbers["carbs_g"],
        insulin_u=numbers["insulin_u"],
        basal_u_per_h=basal,
        duration_min=numbers["duration_min"],
        notes=_text(document, "notes"),
        entered_by=_text(document, "enteredBy", 256),
        document=document,
    )


def ms_of(at: datetime) -> int:
    return round(at.timestamp() * 1000)


def served(
    identifier: str,
    created_at: datetime,
    document: dict[str, Any],
    *,
    srv_created: datetime,
    srv_modified: datetime,
    is_valid: bool = True,
) -> dict[str, Any]:
    """A stored treatment as Nightscout serves it: the document as uploaded, with the server's
    `_id`, `identifier`, `created_at` (UTC), `mills` and, as API v3, `srvCreated`/`srvModified`."""
    out = dict(document)
    created = created_at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    out.update(
        _id=public_id(identifier),
        identifier=identifier,
        created_at=created,
        mills=ms_of(created_at),
        date=ms_of(created_at),
        srvCreated=ms_of(srv_created),
        srvModified=ms_of(srv_modified),
    )
    out.setdefault("eventType", "<none>")
    out.setdefault("utcOffset", 0)
    if not is_valid:
        out["isValid"] = False
    return out
