"""The gateway's MQTT connection, driven by its asyncio loop (`gateway.mqtt_loop`).

It must read every packet over TLS as over plain TCP, and when it loses the connection get it
back by itself, losing nothing. The loss is real: a client with the gateway's own login and
client id connects, so the broker drops the gateway's connection (an MQTT session belongs to
one connection). The intruder
leaves at once without acknowledging anything; readings published while the gateway is away
wait in its persistent session.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.mqtt_loop import BufferedClient, LoopDriver
from gateway.session import client_id
from launcher.stack import Services
from simulators.publisher import Publisher
from telehealth.broker.dynsec import GATEWAY_USER, RELAY_USER
from telehealth.mqtt import parse_mqtt_url, ssl_context
from telehealth.settings import Settings
from tests.conftest import eventually
from tests.factories import make_device, make_patient

pytestmark = pytest.mark.integration


async def _stored(db: psycopg.AsyncConnection[Any], device_id: str) -> int:
    cur = await db.execute("SELECT count(*) AS n FROM reading_receipts WHERE device_id = %s", (device_id,))
    row = await cur.fetchone()
    assert row is not None
    return int(row["n"])


def _take_over_the_gateways_session(settings: Settings) -> Any:
    """Connect as the gateway (same login, same client id, persistent session), then leave."""
    address = settings.mqtt_login(GATEWAY_USER, settings.mqtt_gateway_password)
    intruder = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id(settings),
        clean_session=False,
        protocol=mqtt.MQTTv311,
        manual_ack=True,  # acknowledges nothing: what it is sent stays the session's
    )
    intruder.username_pw_set(address.username, address.password)
    if address.tls:
        intruder.tls_set_context(ssl.create_default_context(cafile=address.ca_file))
    connected = threading.Event()
    connack: list[Any] = []
    intruder.on_connect = lambda _c, _u, _f, code, _p: (connack.append(code), connected.set())
    intruder.connect(address.host, address.port, keepalive=10)
    intruder.loop_start()
    try:
        assert connected.wait(10), "no CONNACK"
    finally:
        intruder.disconnect()
        intruder.loop_stop()
    return connack[0]


async def test_the_gateway_reconnects_after_losing_its_connection_and_loses_nothing(
    services: Services, settings: Settings, db: psycopg.AsyncConnection[Any]
) -> None:
    patient = await make_patient(db, "team-reconnect")
    device = await make_device(db, patient, "oximeter")
    publisher = Publisher(settings.mqtt_relay_url(), client_id="reconnect-publisher")
    await publisher.connect()

    def send(seqs: range) -> None:
        for seq in seqs:
            spo2 = [{"code": "spo2", "value": 97, "unit": "%"}]
            publisher.publish_reading(device.device_id, seq, spo2, measured_at=datetime.now(UTC))

    try:
        send(range(1, 21))
        assert await publisher.drain()

        async def first_twenty() -> bool:
            return await _stored(db, device.device_id) == 20

        await eventually(first_twenty)
        code = await asyncio.to_thread(_take_over_the_gateways_session, settings)
        assert not code.is_failure, f"the takeover was refused ({code}): the test proved nothing"
        send(range(21, 41))  # while the gateway is away
        assert await publisher.drain()
    finally:
        await publisher.close()

    async def all_forty() -> bool:
        return await _stored(db, device.device_id) == 40

    await eventually(all_forty, timeout=30)
    log = (services.log_dir / "gateway.log").read_text(errors="replace")
    assert "MQTT connection lost; reconnecting" in log, "the readings came through another way?"
    assert services.procs["gateway"].poll() is None, "the gateway must carry on, not exit"


async def test_the_loop_driven_client_reads_every_packet_over_tls(settings: Settings) -> None:
    """The TLS path end to end (handshake in an executor, reads on the loop): a burst of small
    messages all arrive. (Mosquitto sends each packet as its own TLS record here; the buffered
    client reads the SSL object until it has nothing, so a record waiting in it is read too.)"""
    assert settings.mqtt_device_url and settings.mqtt_ca_file and settings.mqtt_relay_password
    address = parse_mqtt_url(settings.mqtt_device_url, str(settings.mqtt_ca_file)).login(
        RELAY_USER, settings.mqtt_relay_password.get_secret_value()
    )
    assert address.tls
    await _burst_arrives(address, [str(i).encode() for i in range(500)], "tls")


async def test_the_buffered_client_reads_packets_split_and_joined_across_reads(settings: Settings) -> None:
    """Over plain TCP a burst arrives many packets to a read of the socket, packets cut at any
    byte; more than the driver reads in one turn (the rest is read on the next turn, though the
    socket holds nothing more: the sink's loop is held for a second at the first message, so
    the broker's 1,000 in flight wait in one read); and a message longer than one read."""
    assert settings.mqtt_relay_password
    address = settings.mqtt_login(RELAY_USER, settings.mqtt_relay_password)
    assert not address.tls
    payloads = [b"%d:" % i + b"x" * (i % 7) for i in range(3000)]
    payloads.insert(1500, b"big:" + bytes(range(256)) * 800)  # 200 KiB (the broker takes 256), 4 reads
    await _burst_arrives(address, payloads, "plain")


async def _burst_arrives(address: Any, payloads: list[bytes], name: str) -> None:
    """Every payload published at once arrives, once, in order, through a loop-driven client."""
    client = BufferedClient(
        CallbackAPIVersion.VERSION2, client_id=f"loop-{name}-sink", protocol=mqtt.MQTTv311
    )
    client.username_pw_set(address.username, address.password)
    if (context := ssl_context(address)) is not None:
        client.tls_set_context(context)
    subscribed = asyncio.Event()
    got: list[bytes] = []
    topic = f"bench/relay/{name}"
    client.on_connect = lambda c, _u, _f, _code, _p: c.subscribe(topic, qos=1)
    client.on_subscribe = lambda *_: subscribed.set()

    def on_message(_c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        got.append(bytes(message.payload))
        if len(got) == 1:
            time.sleep(1.0)  # a busy loop: the rest of the burst piles up in the socket meanwhile

    client.on_message = on_message
    stop = asyncio.Event()
    # keepalive 60 s: a read left waiting is not rescued by a PINGRESP within the wait below
    driving = asyncio.create_task(LoopDriver(client).run(address.host, address.port, 60, stop))
    try:
        await asyncio.wait_for(subscribed.wait(), 15)
        publisher = Publisher(address, client_id=f"loop-{name}-source")
        await publisher.connect()
        try:
            for payload in payloads:
                publisher.publish_raw(topic, payload)
            assert await publisher.drain()
        finally:
            await publisher.close()

        async def all_arrived() -> bool:
            return len(got) >= len(payloads)

        await eventually(all_arrived, timeout=15)
        assert got == payloads
    finally:
        stop.set()
        await asyncio.wait_for(driving, 10)
