"""The gateway's MQTT side without a broker: paho reading PUBLISH packets and writing PUBACKs.

A socket pair stands in for the broker: the bench's messages go in as QoS 1 PUBLISH packets,
`--ack-group` at a time, and the gateway's client (`gateway.mqtt_loop.BufferedClient`) reads
them as the loop driver does and acknowledges each. paho's connection state is set by hand
(its private attributes): there is no CONNECT to a socket pair.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, _ConnectionState

from gateway.mqtt_loop import BufferedClient

_BUFFER = 8 << 20


def publish_packet(topic: str, mid: int, payload: bytes) -> bytes:
    """An MQTT 3.1.1 PUBLISH, QoS 1."""
    name = topic.encode()
    body = struct.pack("!H", len(name)) + name + struct.pack("!H", mid) + payload
    length, size = bytearray(), len(body)
    while True:
        size, digit = divmod(size, 128)
        length.append(digit | (0x80 if size else 0))
        if not size:
            return bytes([0x32]) + bytes(length) + body


def connected(sock: Any) -> BufferedClient:
    """The gateway's client on one end of a socket pair, as if connected (no CONNECT is sent)."""
    client = BufferedClient(
        CallbackAPIVersion.VERSION2, client_id="bench", protocol=mqtt.MQTTv311, manual_ack=True
    )
    client._sock = sock
    client._state = _ConnectionState.MQTT_CS_CONNECTED
    client.on_socket_register_write = lambda *_: None
    client.on_socket_unregister_write = lambda *_: None
    return client


def cycle(messages: list[tuple[str, bytes]], group: int) -> int:
    """Every message read and acknowledged, `group` at a time; returns how many arrived."""
    packets = [publish_packet(topic, i % 65535 + 1, body) for i, (topic, body) in enumerate(messages)]
    broker, ours = socket.socketpair()
    for end in (broker, ours):
        end.setblocking(False)
        end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _BUFFER)
        end.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _BUFFER)
    client = connected(ours)
    arrived: list[mqtt.MQTTMessage] = []
    client.on_message = lambda _c, _u, message: arrived.append(message)
    try:
        for k in range(0, len(packets), group):
            broker.sendall(b"".join(packets[k : k + group]))
            wanted = min(len(packets), k + group)
            while len(arrived) < wanted:  # as `LoopDriver._read` does
                if client.loop_read() != mqtt.MQTT_ERR_SUCCESS:
                    raise RuntimeError("the bench's MQTT packets were refused")
                while len(arrived) < wanted and client.more():
                    client.loop_read()
            for message in arrived[k:wanted]:
                client.ack(message.mid, message.qos)
            client.loop_write()
            _drain(broker)
    finally:
        broker.close()
        ours.close()
    return len(arrived)


def _drain(sock: socket.socket) -> None:
    try:
        while sock.recv(_BUFFER):
            pass
    except BlockingIOError:
        pass
