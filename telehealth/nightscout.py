"""Nightscout API v1 documents and this system's readings, both ways. Pure: no I/O.

Uploader apps (xDrip+, AndroidAPS, Loop, Juggluco, Share and LibreLinkUp bridges) post
*entries*: `{"type": "sgv", "date": <epoch ms>, "dateString": ..., "sgv": <mg/dL>,
"direction": ..., "noise": ..., "device": ...}` (or `mbg` for a meter). They have no sequence
numbers and re-upload the same entries routinely, so an entry's identity is derived from what
does not change between uploads: its time and type. `seq = date_ms * 2 + (0 for sgv, 1 for
mbg)`, per uploader device, so a re-upload hits the `(device_id, seq)` receipt and is stored
once. A corrected value re-uploaded under the same time keeps the first value stored.

`to_reading` turns an entry into the MQTT reading document, so that it is then judged by the
very checks the gateway applies (`telehealth.checks`); the whole entry first crosses the same
bounds as an MQTT payload's free-form part (`check_bounds`), since fields that are not mapped
must not carry what MQTT refuses either.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from datetime import UTC, datetime
from typing import Any

from pydantic_core import PydanticCustomError

from telehealth.bounds import MAX_CONTEXT_NODES, MAX_CONTEXT_STRING, check_context, escape_unstorable
from telehealth.codes import MG_DL_PER_MMOL_L
from telehealth.contracts import MAX_PAYLOAD_BYTES, Reason, wire_time

#: Nightscout entry types taken, with the observation source each becomes
ENTRY_SOURCES = {"sgv": "cgm", "mbg": "smbg"}
_TYPE_INDEX = {"sgv": 0, "mbg": 1}
#: entry fields kept with the reading (`context.nightscout`), and served back on reads
KEPT_FIELDS = ("direction", "noise", "device", "filtered", "unfiltered", "rssi", "delta", "trend")
#: Nightscout's numeric `trend` (Dexcom Share, CareLink) and its `direction` names
TRENDS = {
    0: "NONE",
    1: "DoubleUp",
    2: "SingleUp",
    3: "FortyFiveUp",
    4: "Flat",
    5: "FortyFiveDown",
    6: "SingleDown",
    7: "DoubleDown",
    8: "NOT COMPUTABLE",
    9: "RATE OUT OF RANGE",
}
_DIRECTION_TREND = {name: number for number, name in TRENDS.items()}
#: a served `delta` compares with the newest earlier CGM entry at least this old and at most...
DELTA_MIN_GAP_MS = 120_000
#: ...this old (a longer gap is no trend); the difference is scaled to 5 minutes, as Nightscout's
DELTA_MAX_GAP_MS = 900_000
_MMOL = {"mmol", "mmol/l"}
_MGDL = {"mg/dl", "mgdl"}
_BOUND_REASONS = {Reason.UNSTORABLE_TEXT.value, Reason.CONTEXT_TOO_LARGE.value}
#: an escaped NUL or UTF-16 surrogate in ASCII JSON (json.dumps escapes both)
_ESCAPED = re.compile(r"\\u(?:0000|d[89a-f])", re.IGNORECASE)
#: epoch ms beyond this cannot be a time at all (year ~2255) and would overflow `seq`
_MAX_MS = 9_000_000_000_000


class EntryProblem(Exception):
    """An entry that is not a reading: the dead-letter reason and why."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def secret_digest(api_secret_sha1: str) -> bytes:
    """What is stored for an uploader's API secret: SHA-256 of the SHA-1 hex clients send."""
    return hashlib.sha256(api_secret_sha1.strip().lower().encode()).digest()


def api_secret_header(secret: str) -> str:
    """The `API-SECRET` header value Nightscout clients send for a secret: its SHA-1, hex."""
    return hashlib.sha1(secret.encode()).hexdigest()


def entry_seq(date_ms: int, entry_type: str) -> int:
    return date_ms * 2 + _TYPE_INDEX[entry_type]


def entry_id(device_id: str, seq: int) -> str:
    """A stable 24-hex `_id` (Nightscout's ObjectId shape) for a stored reading."""
    return hashlib.sha1(f"{device_id}:{seq}".encode()).hexdigest()[:24]


def _number(value: Any, field: str) -> float:
    if isinstance(value, bool) or value is None:
        raise EntryProblem(Reason.SCHEMA_INVALID, f"{field}: a number is required")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise EntryProblem(Reason.SCHEMA_INVALID, f"{field}: {value[:40]!r} is not a number") from None
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise EntryProblem(Reason.SCHEMA_INVALID, f"{field}: a finite number is required")
    return float(value)


def _date_ms(entry: dict[str, Any]) -> int:
    """`date` (epoch ms) or, failing that, `mills`, then `dateString`/`sysTime` (ISO 8601)."""
    for field in ("date", "mills"):
        if entry.get(field) is not None:
            ms = _number(entry[field], field)
            break
    else:
        text = entry.get("dateString") or entry.get("sysTime")
        if not isinstance(text, str):
            raise EntryProblem(Reason.SCHEMA_INVALID, "date: epoch ms (or dateString) is required")
        try:
            parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        except ValueError:
            raise EntryProblem(Reason.SCHEMA_INVALID, f"dateString: {text[:40]!r} is not ISO 8601") from None
        if parsed.tzinfo is None:
            raise EntryProblem(Reason.SCHEMA_INVALID, "dateString: a UTC offset is required")
        ms = parsed.timestamp() * 1000
    if not 0 <= ms < _MAX_MS:
        raise EntryProblem(Reason.TIME_OUT_OF_WINDOW, f"date: {ms:.0f} ms is not a plausible time")
    return round(ms)


def _unit(entry: dict[str, Any]) -> str:
    """Entries are mg/dL in Nightscout; a client that says `units: "mmol"` is taken at its word."""
    units = entry.get("units")
    if units is None:
        return "mg/dL"
    label = str(units).strip().lower()
    if label in _MGDL:
        return "mg/dL"
    if label in _MMOL:
        return "mmol/L"
    raise EntryProblem(Reason.UNKNOWN_UNIT, f"units: {str(units)[:40]!r} is neither mg/dl nor mmol")


def check_bounds(entry: dict[str, Any]) -> None:
    """The boundary every device document crosses, whichever way it came: at most
    `MAX_PAYLOAD_BYTES`, no NUL or lone surrogate in any key or value, and the bounds of an
    MQTT reading's free-form `context` (depth, values, string length) over the whole entry,
    with the same reasons. (The time window is the reading's own check, after mapping.)"""
    try:
        text = json.dumps(entry, separators=(",", ":"))
    except (ValueError, RecursionError):
        raise EntryProblem(Reason.SCHEMA_INVALID, "the entry cannot be encoded as JSON") from None
    size = len(text.encode())
    if size > MAX_PAYLOAD_BYTES:
        raise EntryProblem(Reason.OVERSIZED, f"entry is {size} bytes, the limit is {MAX_PAYLOAD_BYTES}")
    if _plainly_in_bounds(entry, text):
        return
    try:
        check_context(entry, root="entry")
    except PydanticCustomError as error:
        reason = Reason(error.type) if error.type in _BOUND_REASONS else Reason.SCHEMA_INVALID
        raise EntryProblem(reason, escape_unstorable(error.message(), 500)) from None


def _plainly_in_bounds(entry: dict[str, Any], text: str) -> bool:
    """The common entry, judged at a quarter of the walk's cost: flat, few fields, short
    strings, and no escaped NUL or surrogate in its ASCII JSON. False only means "walk it"
    (a surrogate pair, an emoji, is escaped too), never a refusal; a unit test holds the two
    ways to the same answers."""
    if len(entry) >= MAX_CONTEXT_NODES or _ESCAPED.search(text):
        return False
    for key, value in entry.items():
        if len(key) > MAX_CONTEXT_STRING or isinstance(value, dict | list):
            return False
        if isinstance(value, str) and len(value) > MAX_CONTEXT_STRING:
            return False
        if isinstance(value, float) and not math.isfinite(value):
            return False
    return True


def to_reading(entry: Any, device_id: str) -> dict[str, Any]:
    """The MQTT reading document for one entry; raises `EntryProblem` for what is no reading."""
    if not isinstance(entry, dict):
        raise EntryProblem(Reason.SCHEMA_INVALID, "an entry must be a JSON object")
    check_bounds(entry)
    entry_type = entry.get("type")
    if entry_type not in ENTRY_SOURCES:
        raise EntryProblem(
            Reason.SCHEMA_INVALID, f"type: {str(entry_type)[:40]!r} is not taken (sgv and mbg are)"
        )
    if entry.get(entry_type) is None:
        raise EntryProblem(Reason.SCHEMA_INVALID, f"{entry_type}: the value is missing")
    value = _number(entry[entry_type], entry_type)
    date_ms = _date_ms(entry)
    kept = {k: entry[k] for k in KEPT_FIELDS if k in entry and entry[k] is not None}
    kept["type"] = entry_type
    return {
        "device_id": device_id,
        "seq": entry_seq(date_ms, entry_type),
        "measured_at": wire_time(datetime.fromtimestamp(date_ms / 1000, UTC)),
        "observations": [
            {"code": "glucose", "value": value, "unit": _unit(entry), "source": ENTRY_SOURCES[entry_type]}
        ],
        "context": {"nightscout": kept},
    }


def uploader_battery(status: Any) -> Any:
    """The uploader phone's battery from a devicestatus document, if it reports one.

    xDrip+ and AndroidAPS send `uploader.battery`; some clients `uploaderBattery`."""
    if not isinstance(status, dict):
        return None
    uploader = status.get("uploader")
    if isinstance(uploader, dict) and uploader.get("battery") is not None:
        return uploader["battery"]
    return status.get("uploaderBattery")


def ms_of(at: datetime) -> int:
    return round(at.timestamp() * 1000)


def mg_dl(mmol_l: float) -> int:
    return round(mmol_l * MG_DL_PER_MMOL_L)


def to_entry(
    *, device_id: str, seq: int, measured_at: datetime, value_mmol: float, source: str | None, context: Any
) -> dict[str, Any]:
    """A stored glucose reading as a Nightscout entry (mg/dL, as Nightscout serves them)."""
    kept = context.get("nightscout", {}) if isinstance(context, dict) else {}
    kept = kept if isinstance(kept, dict) else {}
    entry_type = "mbg" if source == "smbg" else "sgv"
    ms = ms_of(measured_at)
    when = measured_at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    entry: dict[str, Any] = {
        "_id": entry_id(device_id, seq),
        "type": entry_type,
        entry_type: mg_dl(value_mmol),
        "date": ms,
        "mills": ms,
        "dateString": when,
        "sysTime": when,
        "utcOffset": 0,
        "device": kept.get("device", device_id),
    }
    if entry_type == "sgv":
        trend = kept.get("trend")
        direction = kept.get("direction")
        if direction is None and isinstance(trend, int) and not isinstance(trend, bool):
            direction = TRENDS.get(trend)
        entry["direction"] = direction if direction is not None else "NONE"
        if trend is None and isinstance(direction, str):
            trend = _DIRECTION_TREND.get(direction)
        if trend is not None:
            entry["trend"] = trend
        entry["noise"] = kept.get("noise", 1)
    for field in ("filtered", "unfiltered", "rssi", "delta"):
        if field in kept:
            entry[field] = kept[field]
    return entry


def add_deltas(entries: list[dict[str, Any]]) -> None:
    """Give every CGM entry (newest first) that has no uploaded `delta` one: the change in mg/dL
    from the newest earlier CGM entry 2 to 15 minutes before it, scaled to 5 minutes; `0` when
    there is none. Followers show it, and some fail on an entry without a number there
    (py-nightscout, and so Home Assistant's integration): a missing glucose is worse than a
    `+0` beside it. The trend arrow (`direction`) stays as uploaded, `NONE` when unknown."""
    cgm = [e for e in entries if e["type"] == "sgv"]
    for i, entry in enumerate(cgm):
        if "delta" in entry:
            continue
        entry["delta"] = 0
        for earlier in cgm[i + 1 :]:
            gap = entry["date"] - earlier["date"]
            if gap < DELTA_MIN_GAP_MS:
                continue
            if gap <= DELTA_MAX_GAP_MS:
                entry["delta"] = round((entry["sgv"] - earlier["sgv"]) * 300_000 / gap, 1)
            break
