"""FHIR search parameters as the endpoint understands them: dates with prefixes, tokens,
references, and the opaque cursor of the `next` link. Errors are `SearchError` with a message
the client reads in an OperationOutcome (400).
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from telehealth.codes import CODES
from telehealth.fhir.base import CODE_SYSTEM, LOINC


class SearchError(ValueError):
    """A search parameter the endpoint cannot honour (answered 400, never ignored)."""


@dataclass
class TimeRange:
    """Half-open [lower, upper) bounds from any number of `date`-like parameters (ANDed)."""

    lower: datetime | None = None
    upper: datetime | None = None

    def narrow(self, lower: datetime | None, upper: datetime | None) -> None:
        if lower is not None and (self.lower is None or lower > self.lower):
            self.lower = lower
        if upper is not None and (self.upper is None or upper < self.upper):
            self.upper = upper


_DATE = re.compile(
    r"^(?P<prefix>eq|ge|gt|le|lt)?(?P<value>\d{4}(-\d{2}(-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?"
    r"(Z|[+-]\d{2}:\d{2})?)?)?)?)$"
)


def _implicit_range(value: str) -> tuple[datetime, datetime]:
    """A FHIR date/dateTime's implicit range [start, end): 2026 is the year, 2026-12-07 the
    day (in UTC), a time to the second is that second. A time without an offset is UTC."""
    try:
        return _range_of(value)
    except OverflowError as exc:  # the last moments of year 9999 have no end we can write
        raise SearchError(f"{value!r} is out of range") from exc


def _range_of(value: str) -> tuple[datetime, datetime]:
    try:
        if len(value) == 4:
            start = datetime(int(value), 1, 1, tzinfo=UTC)
            return start, start.replace(year=start.year + 1)
        if len(value) == 7:
            start = datetime(int(value[:4]), int(value[5:7]), 1, tzinfo=UTC)
            end = (start + timedelta(days=32)).replace(day=1)
            return start, end
        if len(value) == 10:
            start = datetime.fromisoformat(value).replace(tzinfo=UTC)
            return start, start + timedelta(days=1)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise SearchError(f"{value!r} is not a valid FHIR date or dateTime") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    clock = re.sub(r"(Z|[+-]\d{2}:\d{2})$", "", value.split("T", 1)[1])
    if "." in clock:
        step = timedelta(microseconds=1)
    elif clock.count(":") == 2:
        step = timedelta(seconds=1)
    else:
        step = timedelta(minutes=1)
    return moment, moment + step


def parse_date(text: str, into: TimeRange, name: str = "date") -> None:
    """Narrow `into` by one `date` parameter value such as `ge2026-12-01` or `lt2026-12-07T08:00Z`."""
    match = _DATE.match(text.strip())
    if match is None:
        raise SearchError(
            f"{name}={text!r}: expected an optional prefix (eq, ge, gt, le, lt) and a FHIR date or "
            "dateTime, e.g. ge2026-12-01 or lt2026-12-07T08:00:00Z"
        )
    prefix = match.group("prefix") or "eq"
    start, end = _implicit_range(match.group("value"))
    bounds = {
        "eq": (start, end),
        "ge": (start, None),
        "gt": (end, None),
        "lt": (None, start),
        "le": (None, end),
    }[prefix]
    into.narrow(*bounds)


@dataclass
class CodeFilter:
    """Stored codes and LOINC codes a `code` parameter asks for (either matches)."""

    codes: set[str] = field(default_factory=set)
    loincs: set[str] = field(default_factory=set)


def parse_code(text: str) -> CodeFilter:
    """`code=` as FHIR tokens, comma-separated (OR): `http://loinc.org|15074-8`, `15074-8`,
    `urn:telehealth:code|glucose` or `glucose`. An unknown code matches nothing, as in FHIR."""
    wanted = CodeFilter()
    for token in text.split(","):
        token = token.strip()
        if not token:
            raise SearchError("code has an empty value")
        system, _, code = token.rpartition("|")
        if system in ("", LOINC):
            wanted.loincs.add(code)
        if system in ("", CODE_SYSTEM) and code in CODES:
            wanted.codes.add(code)
        if system not in ("", LOINC, CODE_SYSTEM):
            raise SearchError(f"code system {system!r} is not served; use {LOINC} or {CODE_SYSTEM}")
    return wanted


def parse_patient(text: str) -> UUID:
    """`patient=` / `subject=` as `<id>`, `Patient/<id>` or an absolute URL ending so."""
    value = text.strip()
    if "/" in value:
        kind, _, value = value.rstrip("/").rpartition("/")
        if not kind.endswith("Patient"):
            raise SearchError(f"patient reference {text!r} is not a Patient")
    try:
        return UUID(value)
    except ValueError as exc:
        raise SearchError(f"patient {text!r} is not a patient id") from exc


def parse_count(text: str | None, *, default: int, maximum: int) -> int:
    if text is None:
        return default
    try:
        count = int(text)
    except ValueError as exc:
        raise SearchError(f"_count={text!r} is not a number") from exc
    if not 1 <= count <= maximum:
        raise SearchError(f"_count must be between 1 and {maximum}")
    return count


# ---- paging ---------------------------------------------------------------------------------


def encode_cursor(row: dict[str, Any]) -> str:
    """Where the next page starts: after this row in (measured_at, device_id, seq, code) order."""
    key = [row["measured_at"].isoformat(), row["device_id"], row["seq"], row["code"]]
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[datetime, str, int, str]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        at, device_id, seq, code = json.loads(raw)
        moment = datetime.fromisoformat(at)
        if moment.tzinfo is None or not isinstance(seq, int):
            raise ValueError("bad key")
        return moment, str(device_id), seq, str(code)
    except (ValueError, TypeError, json.JSONDecodeError) as exc:
        raise SearchError("_cursor is not one this server issued; follow the `next` link as given") from exc
