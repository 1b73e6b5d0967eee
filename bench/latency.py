"""Alert latency: device publish -> alert on the `telehealth.alerts` topic, and -> alert row.

A probe device alternates an urgent SpO2 (opens an alert) and a normal one (resolves it);
each open is timed from the moment its reading was published. Background publishers load
the pipeline meanwhile. The dashboard's live push is not built yet, so the topic is the
nearest point to a clinician that exists.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

import psycopg
from aiokafka import AIOKafkaConsumer

from bench.load import background_publishers
from simulators.publisher import Publisher
from telehealth.settings import Settings


@dataclass
class Latency:
    probes: int
    topic_ms: list[float]
    row_ms: list[float]
    background_readings_s: float

    @staticmethod
    def _pct(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")

    def report(self) -> str:
        def line(name: str, v: list[float]) -> str:
            return (
                f"{name}: p50 {self._pct(v, 0.5):.0f} ms, p99 {self._pct(v, 0.99):.0f} ms, "
                f"max {max(v, default=float('nan')):.0f} ms, mean {statistics.fmean(v) if v else 0:.0f} ms"
                f" ({len(v)}/{self.probes} alerts)"
            )

        return "\n".join(
            [
                f"alert latency under {self.background_readings_s:,.0f} readings/s background load",
                line("  publish -> alerts topic", self.topic_ms),
                line("  publish -> alert row written (DB clock at insert, before commit)", self.row_ms),
            ]
        )


async def measure(
    settings: Settings,
    probe_patient: UUID,
    probe_device: str,
    background: list[str],
    *,
    probes: int = 40,
    interval_s: float = 0.5,
    background_readings_s: float = 5000,
    per_message: int = 10,
) -> Latency:
    assert settings.mqtt_url and settings.database_url and settings.kafka_bootstrap
    duration = probes * 2 * interval_s + 2
    workers, _queue = background_publishers(  # the queue must outlive the workers' start
        settings.mqtt_relay_url(), background, background_readings_s, duration, per_message
    )
    consumer = AIOKafkaConsumer(
        settings.alerts_topic,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=f"latency-{probe_patient}",
        auto_offset_reset="latest",
    )
    await consumer.start()
    await consumer.getmany(timeout_ms=500)  # join and position at the end before probing
    publisher = Publisher(settings.mqtt_relay_url(), client_id="bench-probe")
    await publisher.connect()
    sent_at: dict[int, float] = {}
    arrived: dict[int, float] = {}

    async def listen() -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=20)
            now = time.time()
            for record in (r for part in batch.values() for r in part):
                alert = json.loads(record.value)
                if alert["patient_id"] == str(probe_patient) and alert["status"] == "open":
                    arrived.setdefault(alert["seq"], now)

    listener = asyncio.create_task(listen())
    for w in workers:
        w.start()
    await asyncio.sleep(1.0)  # background load running before the first probe
    base = int(time.time() * 1000)
    for i in range(probes):
        for value in (88, 97):
            seq = base + 2 * i + (value == 97)
            if value == 88:
                sent_at[seq] = time.time()
            publisher.publish_reading(
                probe_device,
                seq,
                [{"code": "spo2", "value": value, "unit": "%"}],
                measured_at=datetime.now(UTC),
            )
            await asyncio.sleep(interval_s)
    await asyncio.sleep(3)
    listener.cancel()
    await publisher.close()
    await consumer.stop()
    for w in workers:
        w.join(timeout=120)
    async with await psycopg.AsyncConnection.connect(settings.database_url) as conn:
        cur = await conn.execute(
            "SELECT a.seq, e.at FROM alerts a JOIN alert_events e ON e.alert_id = a.id AND e.status = 'open' "
            "WHERE a.patient_id = %s",
            (probe_patient,),
        )
        committed = {r[0]: r[1].timestamp() for r in await cur.fetchall()}
    return Latency(
        probes,
        [1000 * (arrived[s] - t) for s, t in sent_at.items() if s in arrived],
        [1000 * (committed[s] - t) for s, t in sent_at.items() if s in committed],
        background_readings_s,
    )
