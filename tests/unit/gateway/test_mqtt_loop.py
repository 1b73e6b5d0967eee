"""The gateway's paho client writes the PUBACKs queued together with one `send`, byte for byte
what paho would have written, in order, through partial writes and beside other packets."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from bench.mqtt_read import connected

PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"


def puback(mid: int) -> bytes:
    return struct.pack("!BBH", 0x40, 2, mid)


class Wire:
    """Our end of a socket pair, counting sends; `most` bytes a send, and every other send
    refused (`BlockingIOError`) when `stutter`."""

    def __init__(self, sock: socket.socket, most: int = 1 << 20, stutter: bool = False) -> None:
        self.sock, self.most, self.stutter = sock, most, stutter
        self.sends = 0

    def send(self, data: bytes) -> int:
        self.sends += 1
        if self.stutter and self.sends % 2:
            raise BlockingIOError
        return self.sock.send(data[: self.most])

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    broker, ours = socket.socketpair()
    ours.setblocking(False)
    yield broker, ours
    broker.close()
    ours.close()


def received(broker: socket.socket, size: int) -> bytes:
    broker.settimeout(5)
    data = b""
    while len(data) < size:
        chunk = broker.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def test_acks_queued_together_leave_in_one_send(pair: tuple[socket.socket, socket.socket]) -> None:
    broker, ours = pair
    wire = Wire(ours)
    client = connected(wire)
    for mid in range(1, 501):
        client.ack(mid, 1)
    assert client.loop_write() == mqtt.MQTT_ERR_SUCCESS
    assert wire.sends == 1
    assert not client.want_write()
    expected = b"".join(puback(mid) for mid in range(1, 501))
    assert received(broker, len(expected)) == expected


def test_partial_writes_and_other_packets_keep_every_byte_in_order(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    broker, ours = pair
    wire = Wire(ours, most=7, stutter=True)  # 7 bytes: a write ends inside an ack
    client = connected(wire)
    expected = b""
    for mid in range(1, 101):
        client.ack(mid, 1)
        expected += puback(mid)
        if mid in (1, 50, 51):  # a lone ack, and acks either side of another packet
            assert client._send_pingreq() == mqtt.MQTT_ERR_SUCCESS
            expected += PINGREQ
    for _ in range(10_000):
        if not client.want_write():
            break
        assert client.loop_write() == mqtt.MQTT_ERR_SUCCESS
    assert not client.want_write()
    assert received(broker, len(expected)) == expected
    # gathered: far fewer sends than the 103 packets' bytes in 7-byte writes, refused half the time
    assert wire.sends < 2 * (len(expected) // 7 + 1) + 10


def test_a_disconnect_after_acks_is_written_last_and_closes(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    broker, ours = pair
    client = connected(Wire(ours))
    closed: list[bool] = []
    client.on_disconnect = lambda *_: closed.append(True)
    for mid in (7, 8, 9):
        client.ack(mid, 1)
    assert client.disconnect() == mqtt.MQTT_ERR_SUCCESS
    client.loop_write()
    expected = puback(7) + puback(8) + puback(9) + DISCONNECT
    assert received(broker, len(expected) + 1) == expected  # and then the end of the connection
    assert closed == [True]
