"""`<data dir>/stack.json`: where a running `telehealth up` keeps its servers.

`up` writes it (mode 0600: it holds the broker admin secret) once everything is running and
removes it on stop. Commands run beside it with no server URLs configured (`telehealth users
add`, `devices provision`, `db migrate`, ...) read it, so they reach the running stack
without copying URLs by hand. A file left by a stack that died (its process is gone) is
ignored.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import psutil
from pydantic import SecretStr

from telehealth.settings import Settings

FILENAME = "stack.json"
#: what the admin commands need; service-only secrets (gateway, relay) stay out
_FIELDS = (
    "database_url",
    "kafka_bootstrap",
    "mqtt_url",
    "mqtt_device_url",
    "mqtt_ca_file",
    "mqtt_insecure",
    "mqtt_admin_password",
)
_URLS = ("database_url", "kafka_bootstrap", "mqtt_url")


def path_of(settings: Settings) -> Path:
    return settings.data_dir / FILENAME


def write(settings: Settings, *, api_url: str, metrics: dict[str, int]) -> Path:
    """Record the running stack for admin commands; readable by its owner only."""
    document: dict[str, Any] = {"pid": os.getpid(), "api_url": api_url, "metrics": metrics}
    for name in _FIELDS:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        document[name] = None if value is None else value if isinstance(value, bool) else str(value)
    target = path_of(settings)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".tmp")
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(document, out, indent=1)
    partial.replace(target)
    return target


def remove(settings: Settings) -> None:
    with contextlib.suppress(FileNotFoundError):
        path_of(settings).unlink()


def alive(pid: int) -> bool:
    """The process runs and is not a zombie (killed, and nobody has reaped it yet: dead)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def read_live(settings: Settings) -> dict[str, Any] | None:
    """The running stack's record under the data dir, or None (none, unreadable, or stale)."""
    try:
        document: dict[str, Any] = json.loads(path_of(settings).read_text())
    except (OSError, ValueError):
        return None
    pid = document.get("pid")
    if not isinstance(pid, int) or not alive(pid):
        return None
    return document


def with_running_stack(settings: Settings) -> Settings:
    """Fill in the servers of a running `up` when none is configured; otherwise unchanged."""
    if any(getattr(settings, name) for name in _URLS):
        return settings
    document = read_live(settings)
    if document is None:
        return settings
    updates: dict[str, Any] = {}
    for name in _FIELDS:
        value = document.get(name)
        if value is None or getattr(settings, name):
            continue
        if name == "mqtt_admin_password":
            value = SecretStr(value)
        elif name == "mqtt_ca_file":
            value = Path(value)
        updates[name] = value
    return settings.model_copy(update=updates)
