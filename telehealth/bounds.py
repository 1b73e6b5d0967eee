"""Bounds every stored value satisfies, checked where device data enters (pure, no I/O).

PostgreSQL cannot store NUL in text or jsonb, nor a lone UTF-16 surrogate (not UTF-8);
Python's datetime cannot represent years outside 1..9999, so an extreme `measured_at`
would break every later query that reads it. Free-form `context` is bounded in depth and
size so that no device can make a service recurse or allocate without limit.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic_core import PydanticCustomError

#: not before this, whatever the device's clock says
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
#: not further ahead of arrival than this (up to it: stored, flagged `future`)
MAX_AHEAD = timedelta(days=1)

MAX_CONTEXT_DEPTH = 4
MAX_CONTEXT_NODES = 100
MAX_CONTEXT_STRING = 512

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> bool:
    """True if PostgreSQL can store the string as text or inside jsonb."""
    if text.isascii():  # no surrogates: only NUL to look for, without the regex (a third the cost)
        return "\x00" not in text
    return _UNSTORABLE.search(text) is None


def escape_unstorable(text: str, limit: int) -> str:
    """A storable, bounded rendering of any string (for reasons and details we write)."""
    if not storable(text):
        text = _UNSTORABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def unstorable_text(where: str) -> PydanticCustomError:
    return PydanticCustomError(
        "unstorable_text",
        "{where} contains NUL or a lone surrogate, which cannot be stored",
        {"where": where},
    )


def check_text(value: str, where: str) -> str:
    if not storable(value):
        raise unstorable_text(where)
    return value


def check_context(context: dict[str, Any], root: str = "context") -> dict[str, Any]:
    """Depth, size, string length, storable text and finite numbers, walked without recursion.
    Also the bound of every other free-form device document (a Nightscout entry), named `root`."""
    nodes = 0
    stack: list[tuple[Any, int, str]] = [(context, 1, root)]
    while stack:
        value, depth, path = stack.pop()
        nodes += 1
        if nodes > MAX_CONTEXT_NODES:
            raise _too_large(f"more than {MAX_CONTEXT_NODES} values")
        if isinstance(value, dict | list):
            if depth > MAX_CONTEXT_DEPTH:
                raise _too_large(f"{path} nests deeper than {MAX_CONTEXT_DEPTH} levels")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(key, str):
                    _check_string(key, f"{path} key")
                    stack.append((item, depth + 1, f"{path}.{escape_unstorable(key, 40)}"))
                else:
                    stack.append((item, depth + 1, f"{path}.{key}"))
        elif isinstance(value, str):
            _check_string(value, path)
        elif isinstance(value, float) and not math.isfinite(value):
            raise PydanticCustomError("value_error", "{path} is not a finite number", {"path": path})
    return context


def _check_string(text: str, where: str) -> None:
    if len(text) > MAX_CONTEXT_STRING:
        raise _too_large(f"{where} is longer than {MAX_CONTEXT_STRING} characters")
    check_text(text, where)


def _too_large(what: str) -> PydanticCustomError:
    return PydanticCustomError("context_too_large", "context too large: {what}", {"what": what})


def check_window(measured_at: datetime, arrival: datetime) -> None:
    """`measured_at` from 2000 on, and at most a day ahead of when the reading arrived."""
    if measured_at < EARLIEST:
        raise PydanticCustomError(
            "time_out_of_window",
            "measured_at {at} is before {earliest}",
            {"at": measured_at.isoformat(), "earliest": EARLIEST.date().isoformat()},
        )
    if measured_at - arrival > MAX_AHEAD:
        raise PydanticCustomError(
            "time_out_of_window",
            "measured_at {at} is more than a day ahead of arrival {arrival}",
            {"at": measured_at.isoformat(), "arrival": arrival.isoformat()},
        )
