"""Each service's Prometheus metrics move with the work it does, and its logs name the reading."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

from launcher.stack import Services
from simulators.publisher import Publisher
from telehealth.settings import Settings
from telehealth.topics import readings_topic
from tests.conftest import eventually, metric, metrics_url
from tests.factories import make_device, make_patient


async def test_gateway_and_processor_counters_move_and_logs_follow_the_reading(
    services: Services, settings: Settings, db: psycopg.AsyncConnection[Any], data_dir: Path
) -> None:
    gateway, processor = metrics_url(services, "gateway"), metrics_url(services, "processor")
    readings, letters = settings.readings_topic, settings.deadletter_topic

    def read() -> dict[str, float]:
        return {
            "forwarded": metric(gateway, "telehealth_gateway_records_forwarded_total", topic=readings),
            "letters_out": metric(gateway, "telehealth_gateway_records_forwarded_total", topic=letters),
            "unparseable": metric(gateway, "telehealth_gateway_dead_letters_total", reason="unparseable"),
            "received": metric(gateway, "telehealth_gateway_messages_received_total", kind="readings"),
            "consumed": metric(processor, "telehealth_processor_records_received_total", topic=readings),
            "stored": metric(processor, "telehealth_processor_readings_stored_total"),
            "dead": metric(processor, "telehealth_processor_dead_letters_total", reason="unparseable"),
            "batches": metric(processor, "telehealth_processor_batch_records_count"),
            "alerts": metric(processor, "telehealth_processor_alert_latency_seconds_count"),
        }

    before = read()
    patient = await make_patient(db, "team-metrics")
    device = await make_device(db, patient, "oximeter")
    publisher = Publisher(settings.mqtt_relay_url(), client_id="metrics-device")
    await publisher.connect()
    try:
        spo2 = [{"code": "spo2", "value": 84, "unit": "%"}]  # urgent: an alert at once
        publisher.publish_reading(device.device_id, 1, spo2, measured_at=datetime.now(UTC))
        publisher.publish_raw(readings_topic(device.device_id), b"{not json")
        assert await publisher.drain(10)
    finally:
        await publisher.close()

    async def moved() -> dict[str, float] | None:
        now = await asyncio.to_thread(read)
        delta = {k: now[k] - before[k] for k in now}
        return delta if all(v >= 1 for v in delta.values()) else None

    delta = await eventually(moved)
    assert delta["received"] >= 2 and delta["alerts"] >= 1
    assert metric(processor, "telehealth_processor_assigned_partitions", topic=readings) >= 1
    assert metric(gateway, "telehealth_gateway_in_flight") >= 0  # exported (a gauge read at scrape)

    # The processor's log line for the alert names the reading and the batch it came in.
    log = data_dir / "logs" / "processor.log"

    def alert_line() -> str | None:
        for line in log.read_text().splitlines():
            if "spo2_low urgent open published" in line and f"device_id={device.device_id}" in line:
                return line
        return None

    async def logged() -> str | None:
        return alert_line()

    line = await eventually(logged)
    # batch_id: where the batch starts in Kafka (topic:partition:offset) and its size
    assert "seq=1" in line and re.search(r"batch_id=telehealth\.\w+:\d+:\d+\+\d+ ", line), line


async def test_api_metrics_count_requests(http: httpx.AsyncClient) -> None:
    url = str(http.base_url.join("/metrics"))
    before = metric(url, "telehealth_api_requests_total", method="GET", route="/healthz", status="200")
    assert (await http.get("/healthz")).status_code == 200
    after = metric(url, "telehealth_api_requests_total", method="GET", route="/healthz", status="200")
    assert after >= before + 1
