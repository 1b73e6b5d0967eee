"""MQTT connection details shared by gateway and simulators."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlparse


@dataclass(frozen=True)
class MqttAddress:
    host: str
    port: int
    username: str | None = None
    password: str | None = None


def parse_mqtt_url(url: str) -> MqttAddress:
    parsed = urlparse(url)
    if parsed.scheme not in ("mqtt", "tcp"):
        raise ValueError(f"MQTT URL must start with mqtt:// (got {url!r})")
    return MqttAddress(parsed.hostname or "127.0.0.1", parsed.port or 1883, parsed.username, parsed.password)
