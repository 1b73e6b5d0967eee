"""Attacks on the device broker, through the real locked Mosquitto and the running pipeline.

Each attack is tried with a real client; the outcome is checked both at the MQTT level
(refused, not authorised) and in what the pipeline stored, so a rule that only looked right
at the broker but let data through would fail here.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.session import client_id as gateway_client_id
from launcher.mosquitto import EmbeddedMqtt
from simulators.publisher import Publisher
from telehealth.broker.admin import device_logins
from telehealth.broker.dynsec import ADMIN_USER, GATEWAY_USER, RELAY_USER
from telehealth.contracts import wire_time
from telehealth.mqtt import MqttAddress, parse_mqtt_url
from telehealth.provisioning import provision_device
from telehealth.settings import Settings
from telehealth.storage.devices import Credentials
from telehealth.topics import readings_topic, status_topic
from tests.conftest import eventually
from tests.factories import auth, make_device, make_patient, make_user

pytestmark = pytest.mark.usefixtures("services")


@pytest.fixture(scope="module", autouse=True)
def _locked(mqtt_broker: EmbeddedMqtt | str) -> None:
    if isinstance(mqtt_broker, EmbeddedMqtt) and not mqtt_broker.secure:
        pytest.fail("these tests need the locked Mosquitto broker; amqtt cannot enforce per-device rules")


@dataclass
class Attempt:
    """A paho client (MQTT 5, so refusals carry reason codes) run on its own thread."""

    address: MqttAddress
    client_id: str
    connack: Any = None
    suback: list[str] = field(default_factory=list)
    puback: list[str] = field(default_factory=list)
    received: list[str] = field(default_factory=list)
    disconnects: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5)
        if self.address.username is not None:
            self.client.username_pw_set(self.address.username, self.address.password)
        if self.address.tls:
            self.client.tls_set_context(ssl.create_default_context(cafile=self.address.ca_file))
        self._connected = threading.Event()
        self._acked = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda _c, _u, _m, codes, _p: (
            self.suback.extend(map(str, codes)),
            self._acked.set(),
        )
        self.client.on_publish = lambda _c, _u, _m, code, _p: (
            self.puback.append(str(code)),
            self._acked.set(),
        )
        self.client.on_message = lambda _c, _u, message: self.received.append(message.topic)
        self.client.on_disconnect = lambda _c, _u, _f, code, _p: self.disconnects.append(str(code))

    def _on_connect(self, _c: Any, _u: Any, _f: Any, code: Any, _p: Any) -> None:
        self.connack = code
        self._connected.set()

    async def connect(self) -> bool:
        """True when the broker accepted the login."""
        try:
            self.client.connect(self.address.host, self.address.port, keepalive=10)
        except (OSError, ssl.SSLError):
            return False
        self.client.loop_start()
        await asyncio.to_thread(self._connected.wait, 5)
        return self.connack is not None and not self.connack.is_failure

    async def subscribe(self, topic: str) -> str:
        self._acked.clear()
        self.client.subscribe(topic, qos=1)
        await asyncio.to_thread(self._acked.wait, 5)
        return self.suback[-1]

    async def publish(self, topic: str, payload: bytes, retain: bool = False) -> str:
        self._acked.clear()
        self.client.publish(topic, payload, qos=1, retain=retain)
        await asyncio.to_thread(self._acked.wait, 5)
        return self.puback[-1]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def attempts() -> Iterator[list[Attempt]]:
    made: list[Attempt] = []
    yield made
    for a in made:
        a.close()


def plain(settings: Settings, username: str | None = None, password: str | None = None) -> MqttAddress:
    assert settings.mqtt_url
    address = parse_mqtt_url(settings.mqtt_url)
    return address if username is None else address.login(username, password)


def tls(settings: Settings, creds: Credentials) -> MqttAddress:
    assert settings.mqtt_device_url and settings.mqtt_ca_file
    address = parse_mqtt_url(settings.mqtt_device_url, str(settings.mqtt_ca_file))
    return address.login(creds.username, creds.password)


def reading(device_id: str, seq: int, spo2: float = 97) -> bytes:
    body = {
        "device_id": device_id,
        "seq": seq,
        "measured_at": wire_time(datetime.now(UTC)),
        "observations": [{"code": "spo2", "value": spo2, "unit": "%"}],
    }
    return json.dumps(body).encode()


@dataclass
class Devices:
    victim: Credentials
    attacker: Credentials


@pytest.fixture
async def devices(settings: Settings, db: psycopg.AsyncConnection[Any]) -> AsyncIterator[Devices]:
    made = []
    async with device_logins(settings) as logins:
        for role in ("victim", "attacker"):
            patient = await make_patient(db, "team-broker")
            made.append(
                await provision_device(
                    db, logins, device_id=f"oxi-{role}-{patient.hex[:8]}", patient_id=patient, kind="oximeter"
                )
            )
    yield Devices(*made)


async def stored(db: psycopg.AsyncConnection[Any], device_id: str, seq: int) -> bool:
    cur = await db.execute(
        "SELECT 1 FROM reading_receipts WHERE device_id = %s AND seq = %s", (device_id, seq)
    )
    return await cur.fetchone() is not None


async def publish_genuine(
    settings: Settings, creds: Credentials, seq: int, db: psycopg.AsyncConnection[Any]
) -> None:
    """The device itself, over TLS: what it sends is stored."""
    publisher = Publisher(tls(settings, creds), client_id=creds.device_id)
    await publisher.connect()
    publisher.publish_raw(readings_topic(creds.device_id), reading(creds.device_id, seq))
    assert await publisher.drain(10)
    await publisher.close()
    await eventually(lambda: stored(db, creds.device_id, seq))


async def test_anonymous_empty_and_wrong_passwords_are_refused(
    settings: Settings, devices: Devices, attempts: list[Attempt]
) -> None:
    for address in (
        plain(settings),
        plain(settings, devices.victim.username, ""),
        plain(settings, devices.victim.username, "wrong-" + devices.victim.password),
        plain(settings, GATEWAY_USER, devices.victim.password),
        plain(settings, "nobody", "whatever"),
    ):
        attempt = Attempt(address, client_id=f"anon-{len(attempts)}")
        attempts.append(attempt)
        assert not await attempt.connect(), f"{address.username!r} was let in"
        assert "Not authorized" in str(attempt.connack) or "Bad user name" in str(attempt.connack)


async def test_a_device_cannot_publish_as_another_device(
    settings: Settings, devices: Devices, attempts: list[Attempt], db: psycopg.AsyncConnection[Any]
) -> None:
    attacker = Attempt(tls(settings, devices.attacker), client_id=devices.attacker.device_id)
    attempts.append(attacker)
    assert await attacker.connect()
    victim = devices.victim.device_id
    # SpO2 80 on the victim's topic would open an urgent alert for the wrong patient.
    assert "Not authorized" in await attacker.publish(readings_topic(victim), reading(victim, 7, spo2=80))
    # A forged status would raise a battery alert; a retained one would poison every reader.
    forged_status = json.dumps({"state": "online", "battery_pct": 3}).encode()
    assert "Not authorized" in await attacker.publish(status_topic(victim), forged_status, retain=True)
    # Taking the victim's next sequence numbers would make its genuine readings duplicates.
    assert "Not authorized" in await attacker.publish(readings_topic(victim), reading(victim, 8))

    await publish_genuine(settings, devices.victim, 8, db)
    assert not await stored(db, victim, 7), "the forged reading reached the pipeline"
    cur = await db.execute("SELECT battery_pct FROM devices WHERE id = %s", (victim,))
    assert (await cur.fetchone())["battery_pct"] is None, "the forged status reached the pipeline"
    cur = await db.execute("SELECT count(*) AS n FROM dead_letters WHERE device_id = %s", (victim,))
    assert (await cur.fetchone())["n"] == 0
    # Its own topic still works for the attacker device: the rule is per device, not a block.
    assert "Success" in await attacker.publish(
        readings_topic(devices.attacker.device_id), reading(devices.attacker.device_id, 1)
    )
    await eventually(lambda: stored(db, devices.attacker.device_id, 1))


async def test_devices_can_subscribe_to_nothing(
    settings: Settings, devices: Devices, attempts: list[Attempt], db: psycopg.AsyncConnection[Any]
) -> None:
    spy = Attempt(tls(settings, devices.attacker), client_id=devices.attacker.device_id)
    attempts.append(spy)
    assert await spy.connect()
    for topic in (
        "telehealth/v1/devices/+/readings",
        readings_topic(devices.victim.device_id),
        status_topic(devices.victim.device_id),
        "#",
        "$share/gateway/telehealth/v1/devices/+/readings",
        "$share/spy/telehealth/v1/devices/+/readings",
        "$SYS/#",
        "$CONTROL/dynamic-security/#",
    ):
        code = await spy.subscribe(topic)
        assert "Granted" not in code, f"{topic} granted: {code}"
    # Joining the gateway's group would silently take half of every device's readings.
    await publish_genuine(settings, devices.victim, 20, db)
    await publish_genuine(settings, devices.victim, 21, db)
    assert spy.received == []


async def test_only_the_gateway_login_reads_device_topics(
    settings: Settings, devices: Devices, attempts: list[Attempt]
) -> None:
    assert settings.mqtt_relay_password is not None
    relay = Attempt(plain(settings, RELAY_USER, settings.mqtt_relay_password.get_secret_value()), "relay-spy")
    attempts.append(relay)
    assert await relay.connect()
    assert "Granted" not in await relay.subscribe("telehealth/v1/devices/+/readings")
    assert "Granted" not in await relay.subscribe("$share/gateway/telehealth/v1/devices/+/readings")


async def test_a_device_cannot_take_the_gateway_client_id(
    settings: Settings, devices: Devices, attempts: list[Attempt], db: psycopg.AsyncConnection[Any]
) -> None:
    """A takeover with the gateway's id would drop its session; device logins are pinned to
    their own client id, so the broker refuses the connection and the gateway carries on."""
    guessable = "telehealth-gateway-" + socket.gethostname()
    for taken in (guessable, gateway_client_id(settings), devices.victim.device_id):
        thief = Attempt(tls(settings, devices.attacker), client_id=taken)
        attempts.append(thief)
        assert not await thief.connect(), f"client id {taken} taken"
    await publish_genuine(settings, devices.victim, 30, db)


@pytest.mark.parametrize("login", [RELAY_USER, ADMIN_USER])
async def test_a_service_login_cannot_take_the_gateways_session(
    login: str, settings: Settings, attempts: list[Attempt], db: psycopg.AsyncConnection[Any]
) -> None:
    """Service logins are not pinned (they connect under many ids), so one could once take
    the gateway's session by its guessable id: readings PUBACKed meanwhile went to a login that
    may not read them (20 lost). The gateway's id now carries a tag from its own secret."""
    guessable = settings.gateway_client_id or f"telehealth-gateway-{socket.gethostname()}"
    assert gateway_client_id(settings) != guessable and gateway_client_id(settings).startswith(guessable)
    password = {RELAY_USER: settings.mqtt_relay_password, ADMIN_USER: settings.mqtt_admin_password}[login]
    thief = Attempt(settings.mqtt_login(login, password), client_id=guessable)
    attempts.append(thief)
    assert await thief.connect()  # a session of its own, not the gateway's
    patient = await make_patient(db, f"team-takeover-{login}")
    device = await make_device(db, patient, "oximeter")
    publisher = Publisher(settings.mqtt_relay_url(), client_id=f"takeover-{login}")
    await publisher.connect()
    try:
        for seq in range(1, 301):
            publisher.publish_raw(readings_topic(device.device_id), reading(device.device_id, seq))
            if seq % 50 == 0:
                await asyncio.sleep(0.2)  # pacing, not a wait
        assert await publisher.drain(10)
    finally:
        await publisher.close()

    async def all_stored() -> bool:
        cur = await db.execute(
            "SELECT count(*) AS n FROM reading_receipts WHERE device_id = %s", (device.device_id,)
        )
        return (await cur.fetchone()) == {"n": 300}

    await eventually(all_stored)
    assert not thief.disconnects, "nobody took the thief's own session either"


def test_the_tls_listener_is_verified_against_the_broker_ca(settings: Settings) -> None:
    """Devices verify the broker; a client that trusts only the public roots cannot, so a
    stand-in broker without that CA's certificate could not pose as this one."""
    address = parse_mqtt_url(settings.mqtt_device_url or "", str(settings.mqtt_ca_file))
    with socket.create_connection((address.host, address.port), timeout=5) as raw:
        public_roots_only = ssl.create_default_context()
        with pytest.raises(ssl.SSLCertVerificationError):
            public_roots_only.wrap_socket(raw, server_hostname=address.host)
    with socket.create_connection((address.host, address.port), timeout=5) as raw:
        ours = ssl.create_default_context(cafile=address.ca_file)
        with ours.wrap_socket(raw, server_hostname=address.host) as verified:
            assert verified.version() in ("TLSv1.2", "TLSv1.3")


async def test_revocation_disconnects_at_once_and_refuses_the_device(
    settings: Settings,
    devices: Devices,
    attempts: list[Attempt],
    http: httpx.AsyncClient,
    db: psycopg.AsyncConnection[Any],
) -> None:
    device = Attempt(tls(settings, devices.victim), client_id=devices.victim.device_id)
    attempts.append(device)
    assert await device.connect()
    admin = await make_user(db, "admin")
    answer = await http.post(f"/api/v1/devices/{devices.victim.device_id}/revoke", headers=auth(admin))
    assert answer.status_code == 200, answer.text

    async def dropped() -> bool:
        return bool(device.disconnects)

    await eventually(dropped, timeout=5)
    again = Attempt(tls(settings, devices.victim), client_id=devices.victim.device_id)
    attempts.append(again)
    assert not await again.connect()
    clinician = await make_user(db, "clinician", ["team-broker"])
    refused = await http.post(f"/api/v1/devices/{devices.victim.device_id}/revoke", headers=auth(clinician))
    assert refused.status_code == 403


async def test_reassignment_gives_a_new_secret_and_drops_the_old_holder(
    settings: Settings,
    devices: Devices,
    attempts: list[Attempt],
    http: httpx.AsyncClient,
    db: psycopg.AsyncConnection[Any],
) -> None:
    old = Attempt(tls(settings, devices.victim), client_id=devices.victim.device_id)
    attempts.append(old)
    assert await old.connect()
    new_patient = await make_patient(db, "team-broker")
    admin = await make_user(db, "admin")
    answer = await http.post(
        f"/api/v1/devices/{devices.victim.device_id}/reassign",
        json={"patient_id": str(new_patient)},
        headers=auth(admin),
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["mqtt_password"] != devices.victim.password and body["mqtt_url"] == settings.mqtt_device_url

    async def dropped() -> bool:
        return bool(old.disconnects)

    await eventually(dropped, timeout=5)
    stale = Attempt(tls(settings, devices.victim), client_id=devices.victim.device_id)
    attempts.append(stale)
    assert not await stale.connect()
    renewed = Credentials(devices.victim.device_id, body["mqtt_username"], body["mqtt_password"], new_patient)
    await publish_genuine(settings, renewed, 40, db)
    cur = await db.execute(
        "SELECT patient_id FROM reading_receipts WHERE device_id = %s AND seq = 40", (renewed.device_id,)
    )
    assert (await cur.fetchone())["patient_id"] == new_patient


async def test_provisioning_through_the_api_creates_a_working_broker_login(
    settings: Settings, http: httpx.AsyncClient, db: psycopg.AsyncConnection[Any]
) -> None:
    patient = await make_patient(db, "team-broker")
    admin = await make_user(db, "admin")
    answer = await http.post(
        "/api/v1/devices",
        json={"device_id": f"cgm-api-{patient.hex[:8]}", "patient_id": str(patient), "kind": "cgm"},
        headers=auth(admin),
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    creds = Credentials(body["device_id"], body["mqtt_username"], body["mqtt_password"], patient)
    await publish_genuine(settings, creds, 1, db)
