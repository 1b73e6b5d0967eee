"""The query language of Nightscout API v3 searches: `limit`, `sort`/`sort$desc` on the
collection's time field, `<field>$gt|gte|lt|lte` ranges on it and, for entries, `type`.
Filters it does not support are refused, never ignored."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime

from fastapi import HTTPException, Request

#: the most documents one search or history page returns
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
_FILTER = re.compile(r"^(\w+)\$(eq|gt|gte|lt|lte)$")
#: query parameters that are not filters and change nothing here
_IGNORED = {"limit", "sort", "sort$desc", "fields", "now", "token", "skip", "secret"}


def limit_param(request: Request) -> int:
    raw = request.query_params.get("limit", str(DEFAULT_LIMIT))
    try:
        limit = int(raw)
    except ValueError:
        raise HTTPException(400, f"limit: {raw[:20]!r} is not a whole number") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise HTTPException(400, f"limit must be between 1 and {MAX_LIMIT}")
    return limit


def v3_time(value: str, key: str) -> datetime:
    try:
        if value.strip().isdigit():
            number = int(value)
            return datetime.fromtimestamp((number if number > 100_000_000_000 else number * 1000) / 1000, UTC)
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        raise HTTPException(400, f"{key}: {value[:40]!r} is not a time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclasses.dataclass
class Search:
    limit: int
    after: datetime | None = None
    before: datetime | None = None
    since: datetime | None = None
    until: datetime | None = None
    ascending: bool = False
    entry_type: str | None = None


def search_params(request: Request, time_field: str) -> Search:
    """`limit`, `sort`/`sort$desc` on the time field, `<time field>$gt|gte|lt|lte`, and for
    entries `type`. Other filters are refused rather than ignored."""
    q = Search(limit=limit_param(request), ascending=request.query_params.get("sort") == time_field)
    for key, value in request.query_params.multi_items():
        if key in _IGNORED:
            continue
        match = _FILTER.match(key)
        field, op = match.groups() if match else (key, "eq")
        if field == time_field and op != "eq":
            at = v3_time(value, key)
            q.after, q.since, q.before, q.until = {
                "gt": (at, q.since, q.before, q.until),
                "gte": (q.after, at, q.before, q.until),
                "lt": (q.after, q.since, at, q.until),
                "lte": (q.after, q.since, q.before, at),
            }[op]
        elif field == "type" and op == "eq" and time_field == "date":
            q.entry_type = value
        else:
            raise HTTPException(
                400, f"filter {key[:60]!r} is not supported ({time_field} ranges, sort, limit)"
            )
    return q
