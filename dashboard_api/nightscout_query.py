"""The query language Nightscout API v1 clients speak, parsed once for every v1 route:
`count=N` and `find[field][$op]=value` filters.

Other query parameters are ignored, as Nightscout ignores them (xDrip+ adds `rr=<ms>` against
caches); a `find[...]` filter a route does not support is refused, since a filter silently
dropped would answer more than was asked."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime

from fastapi import HTTPException, Request

#: the most documents one v1 read returns (a month of 5-minute readings is 8,640)
MAX_COUNT = 10_000
_FIND = re.compile(r"^find\[(\w+)\](?:\[\$(\w+)\])?$")


def count_param(request: Request, default: int) -> int:
    """`count`, a whole number from 1 to MAX_COUNT (`default` when absent)."""
    raw = request.query_params.get("count", str(default))
    try:
        count = int(raw)
    except ValueError:
        raise HTTPException(400, f"count: {raw[:20]!r} is not a whole number") from None
    check_count(count)
    return count


def check_count(count: int) -> None:
    if not 1 <= count <= MAX_COUNT:
        raise HTTPException(400, f"count must be between 1 and {MAX_COUNT}")


def find_filters(request: Request, operators: frozenset[str]) -> Iterator[tuple[str, str, str | None, str]]:
    """(key, field, operator or None, value) of each `find[...]` parameter, in order; a key that
    is malformed or names an operator outside `operators` is refused."""
    for key, value in request.query_params.multi_items():
        if not key.startswith("find["):
            continue
        match = _FIND.match(key)
        if match is None or (match.group(2) is not None and match.group(2) not in operators):
            raise HTTPException(400, f"filter {key[:60]!r} is not supported")
        yield key, match.group(1), match.group(2), value


def parse_time(value: str, label: str, *, epoch_ms: bool | None = None) -> datetime:
    """A time as clients send it: milliseconds since the epoch (`epoch_ms=True`, or digits when
    None) or ISO 8601 (a `+` offset decoded as a space is put back); naive means UTC."""
    try:
        if epoch_ms or (epoch_ms is None and value.strip().lstrip("-").replace(".", "", 1).isdigit()):
            return datetime.fromtimestamp(float(value) / 1000, UTC)
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace(" ", "+"))
    except (ValueError, OverflowError, OSError):
        raise HTTPException(400, f"{label}: {value[:40]!r} is not a time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
