"""Alert latency: device publish -> the gateway's receipt of the reading (its `received_at`),
-> the processor's batch that opened the alert, -> the `telehealth.alerts` topic, and -> the
alert's event on the dashboard's live stream (SSE), the path a clinician's screen takes.

The batch point is the alert event's `at`, PostgreSQL's `now()`: the start of the batch's
transaction, not the moment of the insert or the commit. It says how long the reading took
to reach a processor batch; the rest of the batch (storing, alerting, consent, commit) and
the push to the screen are in the gap to the stream figure.

Each probe is one patient's oximeter sending an urgent SpO2 reading (it opens an alert on the
first reading); each open is timed from the moment its reading was published. Background
publishers load the pipeline meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import UUID

import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench import sse
from bench.load import background_publishers
from simulators.publisher import Publisher
from telehealth import heartbeat
from telehealth.settings import Settings

FELL_BEHIND = "FELL BEHIND: the load is past capacity, the figures time a growing queue"


@dataclass
class Latency:
    probes: int
    topic_ms: list[float]
    #: publish -> the start of the processor transaction that opened the alert
    row_ms: list[float]
    background_readings_s: float
    #: publish -> the alert's event read off the dashboard's stream (empty: no API was running)
    sse_ms: list[float] = field(default_factory=list)
    #: publish -> the gateway's receipt of the probe reading (its `received_at`)
    gateway_ms: list[float] = field(default_factory=list)
    #: the processors' backlog (Kafka records not yet stored, from their heartbeats) while
    #: the probes ran: the largest, and the last before the background load stopped
    backlog_max: int = 0
    backlog_last: int = 0

    @property
    def kept_up(self) -> bool:
        """Whether the pipeline kept up with the background load: a backlog of more than one
        second of it at the end means the figures time a growing queue, not the pipeline."""
        return self.backlog_last <= self.background_readings_s

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
                *([line("  publish -> gateway received", self.gateway_ms)] if self.gateway_ms else []),
                line("  publish -> processor batch began (alert event time, transaction start)", self.row_ms),
                line("  publish -> alerts topic", self.topic_ms),
                *([line("  publish -> dashboard stream event (SSE)", self.sse_ms)] if self.sse_ms else []),
                f"  processor backlog during the probes: max {self.backlog_max:,} records, at the end"
                f" {self.backlog_last:,} ({'kept up' if self.kept_up else FELL_BEHIND})",
            ]
        )


async def measure(
    settings: Settings,
    probes: list[tuple[UUID, str]],
    background: list[str],
    *,
    interval_s: float = 0.5,
    background_readings_s: float = 5000,
    per_message: int = 10,
    stream: tuple[str, int, str] | None = None,
) -> Latency:
    """Each probe is its own patient's oximeter, used once: its first SpO2 reading, 88 %, is an
    urgent low on the first reading. (One device alternating 88 and 97 would be judged a motion
    artefact, a 9-point drop within 5 minutes, and never alarm.) `stream` is (host, port, token)
    of the dashboard API and a clinician of the probes' care team."""
    assert settings.mqtt_url and settings.database_url and settings.kafka_bootstrap
    duration = len(probes) * interval_s + 4
    workers, _queue = background_publishers(  # the queue must outlive the workers' start
        settings.mqtt_relay_url(), background, background_readings_s, duration, per_message
    )
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        # as the processor's: a fetch parked on an empty partition must not hold the probe's
        # alert back for aiokafka's default 500 ms
        fetch_max_wait_ms=20,
    )
    await consumer.start()
    await consumer.topics()  # fetches the cluster's metadata
    partitions = [
        TopicPartition(settings.alerts_topic, p)
        for p in consumer.partitions_for_topic(settings.alerts_topic) or ()
    ]
    if not partitions:
        raise RuntimeError(f"topic {settings.alerts_topic} has no partitions: is the processor up?")
    consumer.assign(partitions)
    await consumer.seek_to_end(*partitions)
    for tp in partitions:
        await consumer.position(tp)  # resolve the end now, not after the first probe
    publisher = Publisher(settings.mqtt_relay_url(), client_id="bench-probe")
    await publisher.connect()
    base = int(time.time() * 1000)
    for _patient, device in probes:  # warm the caches on the way: a pulse-only reading
        publisher.publish_reading(device, base, [{"code": "pulse", "value": 75, "unit": "/min"}])
    assert await publisher.drain()
    await asyncio.sleep(2)
    sent_at: dict[str, float] = {}
    arrived: dict[str, float] = {}

    async def listen() -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=20)
            now = time.time()
            for record in (r for part in batch.values() for r in part):
                alert = json.loads(record.value)
                if alert["patient_id"] in sent_at and alert["status"] == "open":
                    arrived.setdefault(alert["patient_id"], now)

    streamed: dict[str, float] = {}
    ready = asyncio.Event()

    async def watch(host: str, port: int, token: str) -> None:
        async for event in sse.events(host, port, token):
            if event.name == "snapshot":
                ready.set()
            elif event.name == "alert" and event.data["event"]["status"] == "open":
                patient = event.data["alert"]["patient_id"]
                if patient in sent_at:
                    streamed.setdefault(patient, event.received)

    backlog: list[int] = []
    database_url = settings.database_url

    async def watch_backlog() -> None:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            while True:
                _, beats = await heartbeat.recent(conn, timedelta(seconds=5))
                backlog.append(sum(b.backlog for b in beats if b.service == "processor"))
                await asyncio.sleep(0.5)

    listener = asyncio.create_task(listen())
    backlogs = asyncio.create_task(watch_backlog())
    watcher = asyncio.create_task(watch(*stream)) if stream else None
    if watcher is not None:
        await asyncio.wait_for(ready.wait(), 30)
    for w in workers:
        w.start()
    await asyncio.sleep(1.0)  # background load running before the first probe
    for patient, device in probes:
        sent_at[str(patient)] = time.time()
        publisher.publish_reading(
            device, base + 1, [{"code": "spo2", "value": 88, "unit": "%"}], measured_at=datetime.now(UTC)
        )
        await asyncio.sleep(interval_s)
    backlogs.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await backlogs
    await asyncio.sleep(3)
    listener.cancel()
    if watcher is not None:
        watcher.cancel()
    await publisher.close()
    await consumer.stop()
    for w in workers:
        w.join(timeout=120)
    async with await psycopg.AsyncConnection.connect(settings.database_url) as conn:
        cur = await conn.execute(
            "SELECT a.patient_id, min(e.at) FROM alerts a"
            " JOIN alert_events e ON e.alert_id = a.id AND e.status = 'open'"
            " WHERE a.patient_id = ANY(%s) AND a.rule = 'spo2_low' GROUP BY a.patient_id",
            ([p for p, _ in probes],),
        )
        committed = {str(r[0]): r[1].timestamp() for r in await cur.fetchall()}
        cur = await conn.execute(
            "SELECT patient_id, received_at FROM reading_receipts WHERE device_id = ANY(%s) AND seq = %s",
            ([d for _, d in probes], base + 1),
        )
        received = {str(r[0]): r[1].timestamp() for r in await cur.fetchall()}
    return Latency(
        len(probes),
        [1000 * (arrived[p] - t) for p, t in sent_at.items() if p in arrived],
        [1000 * (committed[p] - t) for p, t in sent_at.items() if p in committed],
        background_readings_s,
        [1000 * (streamed[p] - t) for p, t in sent_at.items() if p in streamed],
        [1000 * (received[p] - t) for p, t in sent_at.items() if p in received],
        max(backlog, default=0),
        backlog[-1] if backlog else 0,
    )
