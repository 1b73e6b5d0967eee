"""MQTT connection details shared by gateway, provisioning, simulators and bench.

`mqtt://host:port` is plain MQTT (the local services' loopback listener); `mqtts://host:port`
is MQTT over TLS, verified against `ca_file` (or the system's trust store when it is None).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, replace
from urllib.parse import quote, unquote, urlparse


@dataclass(frozen=True)
class MqttAddress:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None

    def login(self, username: str, password: str | None) -> MqttAddress:
        return replace(self, username=username, password=password)


def parse_mqtt_url(url: str, ca_file: str | None = None) -> MqttAddress:
    parsed = urlparse(url)
    if parsed.scheme not in ("mqtt", "tcp", "mqtts", "ssl"):
        raise ValueError(f"MQTT URL must start with mqtt:// or mqtts:// (got {url!r})")
    tls = parsed.scheme in ("mqtts", "ssl")
    return MqttAddress(
        parsed.hostname or "127.0.0.1",
        parsed.port or (8883 if tls else 1883),
        unquote(parsed.username) if parsed.username else None,
        unquote(parsed.password) if parsed.password else None,
        tls=tls,
        ca_file=ca_file if tls else None,
    )


def with_login(url: str, username: str, password: str) -> str:
    """The URL carrying a login, for processes that get their broker as one string."""
    parsed = urlparse(url)
    netloc = f"{quote(username, safe='')}:{quote(password, safe='')}@{parsed.hostname}:{parsed.port}"
    return parsed._replace(netloc=netloc).geturl()


def ssl_context(address: MqttAddress) -> ssl.SSLContext | None:
    """A verifying TLS context (hostname and chain) for a `mqtts://` address, else None."""
    if not address.tls:
        return None
    return ssl.create_default_context(cafile=address.ca_file)
