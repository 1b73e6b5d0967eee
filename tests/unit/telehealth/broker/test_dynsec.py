"""The broker's rules as data: what each login may do, and passwords in Mosquitto's format."""

from __future__ import annotations

import base64
import hashlib

from telehealth.broker.dynsec import (
    ADMIN_USER,
    GATEWAY_USER,
    RELAY_USER,
    DeviceLogin,
    add_device_commands,
    config_document,
    device_acls,
    hash_password,
    service_roles,
    verify_password,
)


def test_password_hash_is_mosquittos_pbkdf2_sha512() -> None:
    hashed = hash_password("s3cret", salt=b"0123456789ab", iterations=101)
    scheme, iterations, salt, digest = hashed.split("$")
    expected = hashlib.pbkdf2_hmac("sha512", b"s3cret", base64.b64decode(salt), int(iterations), 64)
    assert scheme == "pbkdf2-sha512" and base64.b64decode(digest) == expected
    assert verify_password("s3cret", hashed) and not verify_password("s3cret!", hashed)
    assert hash_password("s3cret") != hash_password("s3cret"), "salts must differ"


def test_a_device_may_publish_its_own_two_topics_and_nothing_else() -> None:
    acls = device_acls("cgm-1")
    assert {(a["acltype"], a["topic"]) for a in acls} == {
        ("publishClientSend", "telehealth/v1/devices/cgm-1/readings"),
        ("publishClientSend", "telehealth/v1/devices/cgm-1/status"),
    }
    assert all(a["allow"] for a in acls)


def test_only_the_gateway_role_may_subscribe_to_device_topics() -> None:
    subscribers = {
        role["rolename"]: [a["topic"] for a in role["acls"] if a["acltype"] == "subscribePattern"]
        for role in service_roles()
    }
    device_topics = [t for ts in subscribers.values() for t in ts if "devices" in t]
    assert device_topics and all(t in subscribers[GATEWAY_USER] for t in device_topics)
    assert "$share/+/telehealth/v1/devices/+/readings" in subscribers[GATEWAY_USER]
    assert subscribers[ADMIN_USER] == ["$CONTROL/dynamic-security/v1/#"]
    assert all(not t.startswith("telehealth") for t in subscribers[RELAY_USER])


def test_config_pins_devices_to_their_client_id_and_disables_revoked_ones() -> None:
    logins = {u: hash_password(u) for u in (ADMIN_USER, GATEWAY_USER, RELAY_USER)}
    devices = [
        DeviceLogin("oxi-1", hash_password("a")),
        DeviceLogin("oxi-2", hash_password("b"), disabled=True),
        DeviceLogin("old-1", "sha256:abcd"),
    ]
    document, skipped = config_document(logins, devices)
    clients = {c["username"]: c for c in document["clients"]}
    assert skipped == ["old-1"] and "old-1" not in clients
    assert clients["oxi-1"]["clientid"] == "oxi-1" and not clients["oxi-1"].get("disabled")
    assert clients["oxi-2"]["disabled"] is True
    assert "clientid" not in clients[GATEWAY_USER]
    assert document["defaultACLAccess"] == {
        "publishClientSend": False,
        "publishClientReceive": False,
        "subscribe": False,
        "unsubscribe": True,
    }
    roles = {r["rolename"] for r in document["roles"]}
    assert {"device:oxi-1", "device:oxi-2", GATEWAY_USER, ADMIN_USER, RELAY_USER} <= roles


def test_adding_a_device_replaces_an_existing_login() -> None:
    names = [c["command"] for c in add_device_commands("cgm-9", "pw")]
    assert names == ["deleteClient", "deleteRole", "createRole", "createClient"]
    create = add_device_commands("cgm-9", "pw")[-1]
    assert create["clientid"] == "cgm-9" and create["roles"] == [{"rolename": "device:cgm-9"}]
