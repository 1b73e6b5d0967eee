"""The gateway's MQTT session: its login, its client id, and the spool that belongs to it."""

from __future__ import annotations

import hashlib
import hmac
import socket
from pathlib import Path

from telehealth.broker.dynsec import GATEWAY_USER
from telehealth.mqtt import MqttAddress, parse_mqtt_url
from telehealth.settings import Settings


def broker_address(settings: Settings) -> MqttAddress:
    """The broker with the gateway's own login: the only one allowed to read device topics."""
    assert settings.mqtt_url
    if settings.mqtt_insecure:
        return parse_mqtt_url(settings.mqtt_url, str(settings.mqtt_ca_file or "") or None)
    if settings.mqtt_gateway_password is None:
        raise SystemExit("telehealth: set TELEHEALTH_MQTT_GATEWAY_PASSWORD (the gateway's broker login)")
    return settings.mqtt_login(GATEWAY_USER, settings.mqtt_gateway_password)


def client_id(settings: Settings) -> str:
    """Stable across restarts (the broker keeps the session's messages), unique per host, and
    known only to holders of the gateway's secret.

    Mosquitto's dynamic security pins a login to one exact client id, never to a prefix, so
    the admin and relay logins (which connect under many ids) cannot be pinned away from the
    gateway's. Whoever connects under the gateway's id takes its session over, and what the
    broker queued for it then goes to a login that may not read it. So the id carries a tag
    derived from the gateway's password: another login cannot name the session to take it.
    """
    base = settings.gateway_client_id or f"telehealth-gateway-{socket.gethostname()}"
    secret = settings.mqtt_gateway_password
    if settings.mqtt_insecure or secret is None:
        return base
    tag = hmac.new(secret.get_secret_value().encode(), base.encode(), hashlib.sha256).hexdigest()[:16]
    return f"{base}-{tag}"


def spool_path(settings: Settings) -> Path:
    """One spool per gateway (per MQTT session), under the data dir."""
    return settings.data_dir / "gateway" / f"spool-{client_id(settings)}.sqlite3"
