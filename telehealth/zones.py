"""IANA time zone names as the API accepts them: known to Python's zoneinfo, safe in SQL text."""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ZONE_PATTERN = r"^[A-Za-z0-9_+\-/]{1,64}$"
_ZONE = re.compile(ZONE_PATTERN)


def check_zone(name: str) -> str:
    """`name` if it is an IANA time zone this machine knows; ValueError saying so otherwise."""
    if not _ZONE.match(name):
        raise ValueError(f"{name!r} is not a time zone name; use an IANA name such as Europe/London")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}; use an IANA name such as Europe/London") from exc
    return name
