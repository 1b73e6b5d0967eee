"""One MQTT connection of the simulator: a device's own, with its credentials and last will,
or a hub's, shared by many devices. asyncio (aiomqtt), so one process can hold thousands."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from contextlib import AsyncExitStack

import aiomqtt

from simulators.device import Message
from telehealth.mqtt import MqttAddress, ssl_context

log = logging.getLogger(__name__)
MAX_IN_FLIGHT = 500
#: tries of one message across lost connections (each waits for a reconnect, 1-5 s apart)
RESEND_ATTEMPTS = 12


class Link:
    """Publishes QoS 1 without waiting, and counts what the broker acknowledged."""

    def __init__(
        self,
        address: MqttAddress,
        *,
        client_id: str,
        username: str,
        password: str | None,
        will: Message | None = None,
    ) -> None:
        self._address = address
        self._client_id = client_id
        self._username = username
        self._password = password
        self._will = will
        self._stack: AsyncExitStack | None = None
        self._client: aiomqtt.Client | None = None
        self._pending: set[asyncio.Task[None]] = set()
        # paho walks its whole outgoing queue on every acknowledgement, so keep the queue short
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self.sent = 0
        self.acked = 0
        self.failed = 0
        self._reconnect: asyncio.Task[None] | None = None

    async def connect(self, timeout: float = 30) -> None:
        will = None
        if self._will is not None:
            will = aiomqtt.Will(self._will.topic, self._will.payload, qos=1, retain=True)
        client = aiomqtt.Client(
            self._address.host,
            self._address.port,
            identifier=self._client_id,
            username=self._username,
            password=self._password,
            will=will,
            clean_session=True,
            keepalive=60,
            timeout=timeout,
            max_inflight_messages=MAX_IN_FLIGHT,
            tls_context=ssl_context(self._address),
        )
        client.pending_calls_threshold = 100_000  # a hub has thousands in flight by design
        stack = AsyncExitStack()
        self._client = await stack.enter_async_context(client)
        self._stack = stack

    async def publish(self, message: Message) -> None:
        """Returns once the message is handed over; waits while MAX_IN_FLIGHT are unacknowledged."""
        if self._client is None and self._reconnect is not None:
            await asyncio.shield(self._reconnect)  # the connection was lost: wait for the new one
        assert self._client is not None, "publish on a link that is not connected"
        await self._slots.acquire()
        task = asyncio.create_task(self._publish(self._client, message))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        self.sent += 1

    async def _publish(self, client: aiomqtt.Client, message: Message) -> None:
        """Publish; a device keeps what the broker has not acknowledged, so after a lost
        connection it connects again and sends the message again (for up to a minute)."""
        try:
            for attempt in range(RESEND_ATTEMPTS):
                try:
                    await client.publish(
                        message.topic, message.payload, qos=1, retain=message.retain, timeout=60
                    )
                except aiomqtt.MqttError as exc:
                    if attempt == RESEND_ATTEMPTS - 1 or self._stack is None:
                        self.failed += 1
                        log.warning("publish to %s failed: %s", message.topic, exc)
                        return
                    client = await self._reconnected(client)
                else:
                    self.acked += 1
                    return
        finally:
            self._slots.release()

    async def _reconnected(self, lost: aiomqtt.Client) -> aiomqtt.Client:
        """The link's client after one reconnect shared by every publish that met the loss."""
        if self._client is not lost and self._client is not None:
            return self._client
        if self._reconnect is None or self._reconnect.done():
            self._reconnect = asyncio.create_task(self._connect_again())
        await asyncio.shield(self._reconnect)
        return self._client or lost

    async def _connect_again(self) -> None:
        stack = self._stack
        if stack is not None:
            with contextlib.suppress(aiomqtt.MqttError, OSError):
                await stack.aclose()
        self._client = None
        delay = 1.0
        while self._client is None:
            await asyncio.sleep(delay)
            try:
                await self.connect()
                log.info("reconnected to the MQTT broker")
            except (aiomqtt.MqttError, OSError) as exc:
                log.warning("MQTT reconnect failed (%s); retrying", exc)
                delay = min(delay * 2, 5.0)

    async def drain(self) -> None:
        """Wait until the broker acknowledged (or refused) everything sent so far."""
        while self._pending:
            await asyncio.gather(*list(self._pending))

    async def drop(self) -> None:
        """Vanish without a DISCONNECT, as a device losing power or signal does; the broker then
        publishes the last will. Waits for acknowledgements first, so nothing sent is lost."""
        await self.drain()
        if self._client is None:
            return
        # aiomqtt offers only a clean disconnect (which suppresses the will), so cut the socket.
        sock = self._client._client.socket()
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        await self._exit()

    async def close(self) -> None:
        """Clean disconnect after everything sent was acknowledged; the will is not sent."""
        await self.drain()
        await self._exit()

    async def _exit(self) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            with contextlib.suppress(aiomqtt.MqttError):
                await stack.aclose()
