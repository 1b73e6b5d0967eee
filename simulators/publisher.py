"""Publishing simulated readings over MQTT, QoS 1, on each device's own topic."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from telehealth.contracts import wire_time
from telehealth.mqtt import MqttAddress, parse_mqtt_url, ssl_context
from telehealth.topics import readings_topic, status_topic

log = logging.getLogger(__name__)


@dataclass
class PublishStats:
    sent: int = 0
    acked: int = 0


class Publisher:
    """One MQTT connection publishing for one device (with its own login) or, with the trusted
    relay login, for many devices (tests and the latency probe)."""

    def __init__(self, broker: MqttAddress | str, client_id: str = "telehealth-simulator") -> None:
        address = parse_mqtt_url(broker) if isinstance(broker, str) else broker
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        self._client.username_pw_set(address.username or client_id, address.password)
        if (context := ssl_context(address)) is not None:
            self._client.tls_set_context(context)
        self._client.max_inflight_messages_set(200)
        self._client.max_queued_messages_set(0)
        self._connected = threading.Event()
        self._lock = threading.Lock()
        self.stats = PublishStats()
        self._client.on_connect = lambda *_a: self._connected.set()
        self._client.on_publish = self._on_publish
        self._address = address

    def _on_publish(self, *_args: Any) -> None:
        with self._lock:
            self.stats.acked += 1

    async def connect(self, timeout: float = 10) -> None:
        self._client.connect(self._address.host, self._address.port, keepalive=30)
        self._client.loop_start()
        if not await asyncio.to_thread(self._connected.wait, timeout):
            raise ConnectionError(f"MQTT broker at {self._address.host}:{self._address.port} did not answer")

    def publish_raw(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        self._client.publish(topic, payload, qos=1, retain=retain)
        self.stats.sent += 1

    def publish_reading(
        self,
        device_id: str,
        seq: int,
        observations: list[dict[str, Any]],
        *,
        measured_at: datetime | None = None,
        battery_pct: int | None = None,
    ) -> None:
        reading: dict[str, Any] = {
            "device_id": device_id,
            "seq": seq,
            "measured_at": wire_time(measured_at or datetime.now(UTC)),
            "observations": observations,
        }
        if battery_pct is not None:
            reading["battery_pct"] = battery_pct
        self.publish_raw(readings_topic(device_id), json.dumps(reading).encode())

    def publish_status(self, device_id: str, state: str, battery_pct: int | None = None) -> None:
        body = {"state": state} | ({"battery_pct": battery_pct} if battery_pct is not None else {})
        self.publish_raw(status_topic(device_id), json.dumps(body).encode(), retain=True)

    async def drain(self, timeout: float = 30) -> bool:
        """Wait until the broker acknowledged everything sent; False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # paho counts acks on its own thread; polling the counter keeps that thread lock-free.
        while self.stats.acked < self.stats.sent and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        return self.stats.acked >= self.stats.sent

    async def close(self) -> None:
        await self.drain(10)
        self._client.disconnect()
        self._client.loop_stop()
