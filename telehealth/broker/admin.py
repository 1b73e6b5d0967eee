"""Changing a running broker's logins through the dynamic-security `$CONTROL` topic.

Commands go out in chunks (the broker caps message size) and each chunk's response is checked,
so a provisioning call fails loudly instead of leaving a device that cannot connect.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol

import aiomqtt

from telehealth.broker.dynsec import (
    ADMIN_USER,
    CONTROL_TOPIC,
    RESPONSE_TOPIC,
    add_device_commands,
    disable_device_commands,
)
from telehealth.errors import TelehealthError
from telehealth.mqtt import MqttAddress, ssl_context
from telehealth.settings import Settings

log = logging.getLogger(__name__)
#: Bytes of commands per message: well under the broker's message size limit.
_CHUNK_BYTES = 96 * 1024
#: Errors the broker answers for a delete of something that is not there: harmless.
_ABSENT = ("not found",)


class BrokerAdminError(TelehealthError):
    """The broker did not apply a login change. Retriable when the broker was unreachable."""

    def __init__(self, message: str, *, retriable: bool) -> None:
        super().__init__(message)
        self.retriable = retriable


class DeviceLogins(Protocol):
    """What provisioning needs of the broker."""

    async def add_devices(self, logins: Sequence[tuple[str, str]]) -> None: ...

    async def disable_device(self, device_id: str) -> None: ...


class DynsecAdmin:
    """One admin connection; commands are serialised so responses pair with requests."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self._client = client
        self._lock = asyncio.Lock()

    async def run(self, commands: Sequence[dict[str, Any]], timeout: float = 10.0) -> None:
        async with self._lock:
            chunk: list[dict[str, Any]] = []
            size = 0
            for command in commands:
                chunk.append(dict(command))
                size += len(json.dumps(command)) + 40
                if size >= _CHUNK_BYTES:
                    await self._run_chunk(chunk, timeout)
                    chunk, size = [], 0
            if chunk:
                await self._run_chunk(chunk, timeout)

    async def _run_chunk(self, commands: list[dict[str, Any]], timeout: float) -> None:
        tag = secrets.token_hex(8)
        for i, command in enumerate(commands):
            command["correlationData"] = f"{tag}-{i}"
        await self._client.publish(CONTROL_TOPIC, json.dumps({"commands": commands}), qos=1)
        try:
            async with asyncio.timeout(timeout):
                async for message in self._client.messages:
                    responses = json.loads(bytes(message.payload)).get("responses", [])
                    if responses and str(responses[0].get("correlationData", "")).startswith(tag):
                        _check(responses)
                        return
        except TimeoutError as exc:
            raise BrokerAdminError("the broker did not answer a login change", retriable=True) from exc

    async def add_devices(self, logins: Sequence[tuple[str, str]]) -> None:
        await self.run(
            [c for device_id, password in logins for c in add_device_commands(device_id, password)]
        )

    async def disable_device(self, device_id: str) -> None:
        await self.run(disable_device_commands(device_id))


def _check(responses: list[dict[str, Any]]) -> None:
    for response in responses:
        error = response.get("error")
        if not error:
            continue
        if response.get("command", "").startswith("delete") and any(a in error.lower() for a in _ABSENT):
            continue
        raise BrokerAdminError(f"broker refused {response.get('command')}: {error}", retriable=False)


class OpenBroker:
    """A broker without logins (the pure-Python fallback, run with --insecure-broker): nothing
    to change, and every call says so in the log."""

    async def add_devices(self, logins: Sequence[tuple[str, str]]) -> None:
        log.warning("broker has no logins (insecure mode): %d device login(s) not created", len(logins))

    async def disable_device(self, device_id: str) -> None:
        log.warning("broker has no logins (insecure mode): %s refused by the gateway only", device_id)


@asynccontextmanager
async def connect_admin(address: MqttAddress, *, timeout: float = 10.0) -> AsyncIterator[DynsecAdmin]:
    """An admin session on the broker, for the length of the block."""
    client = aiomqtt.Client(
        address.host,
        address.port,
        username=address.username,
        password=address.password,
        identifier=f"telehealth-admin-{secrets.token_hex(4)}",
        timeout=timeout,
        tls_context=ssl_context(address),
    )
    try:
        async with client:
            await client.subscribe(RESPONSE_TOPIC, qos=1)
            yield DynsecAdmin(client)
    except aiomqtt.MqttError as exc:
        raise BrokerAdminError(f"cannot reach the broker as admin: {exc}", retriable=True) from exc


@asynccontextmanager
async def device_logins(settings: Settings) -> AsyncIterator[DeviceLogins]:
    """Where provisioning creates and disables device logins, as the settings say."""
    if settings.mqtt_insecure:
        yield OpenBroker()
        return
    if settings.mqtt_admin_password is None:
        raise BrokerAdminError(
            "set TELEHEALTH_MQTT_ADMIN_PASSWORD (the broker's dynamic-security admin) so devices get"
            " broker logins, or TELEHEALTH_MQTT_INSECURE=true for a broker without logins",
            retriable=False,
        )
    async with connect_admin(settings.mqtt_login(ADMIN_USER, settings.mqtt_admin_password)) as admin:
        yield admin
