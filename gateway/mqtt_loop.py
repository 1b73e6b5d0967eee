"""paho-mqtt driven by the asyncio loop instead of its own network thread.

paho's threaded loop cost the gateway a second thread fighting the loop for the GIL, a
`select()` per packet, a hand-off per message (`call_soon_threadsafe`) and a wake-up byte over
a socket pair per PUBACK (profile and measurement in
docs/decisions/0001-paho-on-the-gateways-event-loop.md). Here the loop watches paho's socket
(`add_reader`/`add_writer`, paho's external-loop callbacks), so messages arrive and PUBACKs
leave on the loop's own thread, and acks queued together go out in one `send`
(`BufferedClient`).

paho does not reconnect in this mode; `run` does, with the same 1-5 s backoff the threaded
loop used, until asked to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.client import PUBACK
from paho.mqtt.enums import MQTTErrorCode

log = logging.getLogger(__name__)

MIN_DELAY_S, MAX_DELAY_S = 1.0, 5.0
_MAX_PACKETS_PER_READ = 256  # then let the loop run the intake and the acker


#: bytes a read takes from the socket at most
READ_BYTES = 65536
#: PUBACKs gathered into one write at most
GATHER_ACKS = 4096


class BufferedClient(mqtt.Client):
    """paho's client, reading its socket up to `READ_BYTES` at a time, and writing the PUBACKs
    queued together with one `send`.

    paho asks the socket for each packet in pieces: a byte of command, a byte per byte of
    length, then the rest. A small PUBLISH cost four system calls, and a fifth to peek for
    another packet (`strace` of the gateway at 2,000 messages/s: 4.3 `recvfrom` per message).
    Here paho's pieces come from a buffer filled by one read, and whether another packet is
    here is a look at that buffer, or the same one read. paho's own handling of what a read
    returns is unchanged: nothing yet (`BlockingIOError`), the end of the connection (no
    bytes), an error.

    paho writes each queued packet with its own `send`: a group of acks cost a system call per
    ack. Before paho writes, the PUBACKs at the head of its queue become one packet of their
    bytes, in order. Nothing is owed on a PUBACK once written (paho acts on a written packet
    only for a QoS 0 PUBLISH or a DISCONNECT, which are never gathered), and paho's handling
    of a partial write carries on unchanged with the rest of the gathered bytes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_from: Any = None  # the socket the buffer's bytes came from
        self._buffer = b""
        self._at = 0
        self._ended = False  # the peer closed the connection: paho is told on its next read
        self._drained = False  # the last read found nothing: the loop calls again when there is

    def _packet_write(self) -> MQTTErrorCode:
        out = self._out_packet
        if len(out) > 1 and out[0]["command"] == PUBACK and out[1]["command"] == PUBACK:
            first = out.popleft()  # perhaps partly written already: its rest goes first
            parts = [first["packet"][first["pos"] :]]
            while out and len(parts) < GATHER_ACKS and out[0]["command"] == PUBACK and out[0]["pos"] == 0:
                parts.append(out.popleft()["packet"])
            data = b"".join(parts)
            out.appendleft(
                {
                    "command": PUBACK,
                    "mid": 0,
                    "qos": 0,
                    "pos": 0,
                    "to_process": len(data),
                    "packet": data,
                    "info": None,
                }
            )
        return super()._packet_write()

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._at >= len(self._buffer) and not self._fill():
            return b""  # the connection ended
        piece = self._buffer[self._at : self._at + bufsize]
        self._at += len(piece)
        return piece

    def _fill(self) -> bool:
        """One read into the empty buffer; False once the connection has ended. Raises what
        paho's own read raises: `BlockingIOError` when nothing is here yet."""
        sock = self._sock
        if sock is not self._read_from:  # a new connection: nothing of the old one is kept
            self._read_from, self._buffer, self._at, self._ended, self._drained = sock, b"", 0, False, False
        if self._ended:
            return False
        try:
            data = super()._sock_recv(READ_BYTES)
        except BlockingIOError:
            self._drained = True
            raise
        self._buffer, self._at, self._drained = data, 0, False
        self._ended = not data
        return bool(data)

    def more(self) -> bool:
        """Whether another packet's bytes are already here: in the buffer, or in the SSL
        object or the kernel's buffer (then read into ours). Asked right after paho's read, so
        a read that just found nothing is the answer, without another system call."""
        if self._sock is None:
            return False
        if self._sock is self._read_from:
            if self._at < len(self._buffer):
                return True
            if self._drained:
                return False
        try:
            self._fill()
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True  # let paho's own read meet the error and close the connection
        return True  # bytes, or the end of the connection: paho's next read sees which


class LoopDriver:
    """Runs one paho client on the running asyncio loop."""

    def __init__(self, client: BufferedClient) -> None:
        self._client = client
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._closed = asyncio.Event()
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write

    def _in_loop(self, call: Callable[..., Any], *args: Any) -> None:
        """paho calls back from `connect()`'s executor thread too; the loop is not thread-safe."""
        if threading.get_ident() == self._thread:
            call(*args)
        else:
            self._loop.call_soon_threadsafe(call, *args)

    def _read(self) -> None:
        """Every packet the socket holds, not one per loop iteration (paho's `loop_read`
        reads one packet a call). Past `_MAX_PACKETS_PER_READ` the rest waits for the loop's
        next turn: the socket may hold nothing more, with packets in our buffer."""
        client = self._client
        for _ in range(_MAX_PACKETS_PER_READ):
            if client.loop_read() != mqtt.MQTT_ERR_SUCCESS or not client.more():
                return
        self._loop.call_soon(self._read)

    def _write(self) -> None:
        self._client.loop_write()

    def _on_socket_open(self, _c: mqtt.Client, _u: Any, sock: Any) -> None:
        self._in_loop(self._loop.add_reader, sock.fileno(), self._read)

    def _on_socket_close(self, _c: mqtt.Client, _u: Any, sock: Any) -> None:
        fd = sock.fileno()

        def closed() -> None:
            if fd > -1:
                self._loop.remove_reader(fd)
                self._loop.remove_writer(fd)
            self._closed.set()

        self._in_loop(closed)

    def _on_register_write(self, _c: mqtt.Client, _u: Any, sock: Any) -> None:
        self._in_loop(self._loop.add_writer, sock.fileno(), self._write)

    def _on_unregister_write(self, _c: mqtt.Client, _u: Any, sock: Any) -> None:
        self._in_loop(self._loop.remove_writer, sock.fileno())

    async def run(self, host: str, port: int, keepalive: int, stop: asyncio.Event) -> None:
        """Connect, keep the session alive, reconnect after a loss; return once `stop` is set
        (after a clean DISCONNECT)."""
        delay = MIN_DELAY_S
        while not stop.is_set():
            self._closed.clear()
            try:
                await self._loop.run_in_executor(None, self._client.connect, host, port, keepalive)
            except (OSError, ValueError) as exc:  # refused, unreachable, TLS handshake failed
                log.warning("MQTT connect to %s:%d failed (%s); retrying in %.0fs", host, port, exc, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(delay * 2, MAX_DELAY_S)
                continue
            delay = MIN_DELAY_S
            misc = asyncio.create_task(self._keepalive())
            closed = asyncio.create_task(self._closed.wait())
            stopping = asyncio.create_task(stop.wait())
            try:
                await asyncio.wait({closed, stopping}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                misc.cancel()
                closed.cancel()
                stopping.cancel()
            if stop.is_set():
                self._client.disconnect()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closed.wait(), 2.0)
                return
            log.warning("MQTT connection lost; reconnecting in %.0fs", delay)
            await asyncio.sleep(delay)

    async def _keepalive(self) -> None:
        """paho's periodic work: PINGREQ when idle, and closing a connection that stopped answering."""
        while self._client.loop_misc() == mqtt.MQTT_ERR_SUCCESS:  # noqa: ASYNC110 (a timer)
            await asyncio.sleep(1.0)
