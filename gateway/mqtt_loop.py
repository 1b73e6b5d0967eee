"""paho-mqtt driven by the asyncio loop instead of its own network thread.

paho's threaded loop cost the gateway a second thread fighting the loop for the GIL, a
`select()` per packet, a hand-off per message (`call_soon_threadsafe`) and a wake-up byte over
a socket pair per PUBACK (profile and measurement in
docs/decisions/0001-paho-on-the-gateways-event-loop.md). Here the loop watches paho's socket
(`add_reader`/`add_writer`, paho's external-loop callbacks), so messages arrive and PUBACKs
leave on the loop's own thread, and acks queued together go out in one write.

paho does not reconnect in this mode; `run` does, with the same 1-5 s backoff the threaded
loop used, until asked to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

log = logging.getLogger(__name__)

MIN_DELAY_S, MAX_DELAY_S = 1.0, 5.0
_MAX_PACKETS_PER_READ = 256  # then let the loop run the intake and the acker


def _more(sock: Any) -> bool:
    """Whether another packet's bytes are already here (decrypted, or in the kernel's buffer)."""
    if sock is None:
        return False
    if isinstance(sock, ssl.SSLSocket):
        return sock.pending() > 0
    try:
        return bool(sock.recv(1, socket.MSG_PEEK))
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True  # let paho's own read meet the error and close the connection


class LoopDriver:
    """Runs one paho client on the running asyncio loop."""

    def __init__(self, client: mqtt.Client) -> None:
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
        reads one packet a call)."""
        client = self._client
        for _ in range(_MAX_PACKETS_PER_READ):
            if client.loop_read() != mqtt.MQTT_ERR_SUCCESS or not _more(client.socket()):
                break

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
