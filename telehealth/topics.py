"""MQTT topic names (docs/contract.md, "Device protocol")."""

from __future__ import annotations

import re

READINGS_FILTER = "telehealth/v1/devices/+/readings"
STATUS_FILTER = "telehealth/v1/devices/+/status"
_TOPIC = re.compile(r"^telehealth/v1/devices/([^/]+)/(readings|status)$")


def readings_topic(device_id: str) -> str:
    return f"telehealth/v1/devices/{device_id}/readings"


def status_topic(device_id: str) -> str:
    return f"telehealth/v1/devices/{device_id}/status"


def device_of(topic: str) -> str | None:
    """The device id a topic names, or None when it is not one of ours."""
    match = _TOPIC.match(topic)
    return match.group(1) if match else None


def shared(filter_: str, group: str | None) -> str:
    return f"$share/{group}/{filter_}" if group else filter_
