"""Broker identities and their rights, as Mosquitto dynamic-security commands and config.

Every device gets a login (username = device id) pinned to its own client id, and a role of
its own that may publish only its readings and status topics: dynamic security in Mosquitto
2.0 has no `%u` patterns, so the rule is spelled out per device. Services have fixed logins:
the gateway reads device topics (and so alone can join its shared group), the admin manages
logins through `$CONTROL`, and the relay is a trusted forwarder for tests, bench and hubs.
Default access denies everything a role does not grant.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from telehealth.topics import READINGS_FILTER, STATUS_FILTER, readings_topic, status_topic

ADMIN_USER = "telehealth-admin"
GATEWAY_USER = "telehealth-gateway"
RELAY_USER = "telehealth-relay"
SERVICE_USERS = (ADMIN_USER, GATEWAY_USER, RELAY_USER)

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"
#: Topics the bench uses for its raw broker-relay baseline (relay login only).
BENCH_FILTER = "bench/#"

#: PBKDF2 rounds as Mosquitto itself writes them. Every secret here is 192 random bits, so
#: the rounds add nothing to its strength; a slow hash would only slow provisioning.
_ITERATIONS = 101
_SCHEME = "pbkdf2-sha512"


def hash_password(password: str, *, salt: bytes | None = None, iterations: int = _ITERATIONS) -> str:
    """The password in Mosquitto's own format, so the broker can check it from our database."""
    salt = salt if salt is not None else os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    return "$".join(
        (_SCHEME, str(iterations), base64.b64encode(salt).decode(), base64.b64encode(digest).decode())
    )


def verify_password(password: str, hashed: str) -> bool:
    parsed = _parse(hashed)
    if parsed is None:
        return False
    iterations, salt, _ = parsed
    return hash_password(password, salt=base64.b64decode(salt), iterations=iterations) == hashed


def _parse(hashed: str) -> tuple[int, str, str] | None:
    parts = hashed.split("$")
    if len(parts) != 4 or parts[0] != _SCHEME:
        return None
    return int(parts[1]), parts[2], parts[3]


def _acl(kind: str, topic: str) -> dict[str, Any]:
    return {"acltype": kind, "topic": topic, "allow": True}


def device_role(device_id: str) -> str:
    return f"device:{device_id}"


def device_acls(device_id: str) -> list[dict[str, Any]]:
    """Publish its own readings and status (also as its will); nothing else, no subscriptions."""
    return [
        _acl("publishClientSend", readings_topic(device_id)),
        _acl("publishClientSend", status_topic(device_id)),
    ]


def service_roles() -> list[dict[str, Any]]:
    control = CONTROL_TOPIC + "/#"
    return [
        {
            "rolename": ADMIN_USER,
            "acls": [
                _acl("publishClientSend", control),
                _acl("publishClientReceive", control),
                _acl("subscribePattern", control),
            ],
        },
        {
            # Mosquitto checks a shared subscription by its full `$share/<group>/...` filter.
            "rolename": GATEWAY_USER,
            "acls": [
                acl
                for filter_ in (READINGS_FILTER, STATUS_FILTER)
                for acl in (
                    _acl("subscribePattern", filter_),
                    _acl("subscribePattern", f"$share/+/{filter_}"),
                    _acl("publishClientReceive", filter_),
                )
            ],
        },
        {
            "rolename": RELAY_USER,
            "acls": [
                _acl("publishClientSend", READINGS_FILTER),
                _acl("publishClientSend", STATUS_FILTER),
                _acl("publishClientSend", BENCH_FILTER),
                _acl("subscribePattern", BENCH_FILTER),
                _acl("publishClientReceive", BENCH_FILTER),
            ],
        },
    ]


@dataclass(frozen=True)
class DeviceLogin:
    """A device as the broker knows it: its id, its password hash, and whether it may connect."""

    device_id: str
    password_hash: str
    disabled: bool = False


def _client_entry(
    username: str, hashed: str, roles: list[str], *, clientid: str | None, disabled: bool = False
) -> dict[str, Any] | None:
    parsed = _parse(hashed)
    if parsed is None:
        return None
    iterations, salt, digest = parsed
    entry: dict[str, Any] = {
        "username": username,
        "password": digest,
        "salt": salt,
        "iterations": iterations,
        "roles": [{"rolename": r} for r in roles],
    }
    if clientid is not None:
        entry["clientid"] = clientid
    if disabled:
        entry["disabled"] = True
    return entry


def config_document(
    service_hashes: dict[str, str], devices: Iterable[DeviceLogin]
) -> tuple[dict[str, Any], list[str]]:
    """The plugin's configuration file for these logins, and the device ids left out because
    their secret predates broker logins (they need a new secret)."""
    clients = []
    for username in SERVICE_USERS:
        if username in service_hashes:
            entry = _client_entry(username, service_hashes[username], [username], clientid=None)
            if entry is not None:
                clients.append(entry)
    roles = service_roles()
    skipped = []
    for device in devices:
        entry = _client_entry(
            device.device_id,
            device.password_hash,
            [device_role(device.device_id)],
            clientid=device.device_id,
            disabled=device.disabled,
        )
        if entry is None:
            skipped.append(device.device_id)
            continue
        clients.append(entry)
        roles.append({"rolename": device_role(device.device_id), "acls": device_acls(device.device_id)})
    document = {
        "clients": clients,
        "roles": roles,
        "groups": [],
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": False,
            "subscribe": False,
            "unsubscribe": True,
        },
    }
    return document, skipped


def add_device_commands(device_id: str, password: str) -> list[dict[str, Any]]:
    """Create the device's role and login; an existing login is replaced (new password, kicked)."""
    role = device_role(device_id)
    return [
        {"command": "deleteClient", "username": device_id},
        {"command": "deleteRole", "rolename": role},
        {"command": "createRole", "rolename": role, "acls": device_acls(device_id)},
        {
            "command": "createClient",
            "username": device_id,
            "password": password,
            "clientid": device_id,
            "roles": [{"rolename": role}],
        },
    ]


def disable_device_commands(device_id: str) -> list[dict[str, Any]]:
    """Refuse the login from now on; Mosquitto also disconnects its open connections."""
    return [{"command": "disableClient", "username": device_id}]
