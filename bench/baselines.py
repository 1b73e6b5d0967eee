"""Raw baselines measured in the same run as the pipeline: what the parts do on their own.

MQTT relay alone (QoS 1 publishers -> broker -> one plain subscriber standing in for the
gateway), Kafka alone (produce + consume), COPY alone (rows into PostgreSQL). `publish` is
the load generator the pipeline phases share with the relay baseline.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg

from bench.load import collect, publish_worker, subscribe_worker
from processor.sink import READINGS
from telehealth.topics import readings_topic


def publish(
    mqtt_url: str,
    template: str,
    devices: list[str],
    messages: int,
    per_message: int,
    publishers: int,
    start_seq: int,
    ca_file: str | None = None,
) -> tuple[float, float, int]:
    ctx = mp.get_context("spawn")
    out: Any = ctx.Queue()
    chunks = [devices[i::publishers] for i in range(publishers)]
    procs = [
        ctx.Process(
            target=publish_worker,
            args=(
                mqtt_url,
                template,
                chunk,
                messages // publishers,
                per_message,
                start_seq,
                out,
                None,
                ca_file,
            ),
        )
        for chunk in chunks
    ]
    for p in procs:
        p.start()
    results = collect(out, procs)
    for p in procs:
        p.join()
    return min(r[0] for r in results), max(r[1] for r in results), sum(r[2] for r in results)


def mqtt_relay(load: tuple[str, str | None], sink_url: str, messages: int, publishers: int) -> float:
    """The broker alone: publishers as in the end-to-end run, one plain subscriber as the gateway."""
    ctx = mp.get_context("spawn")
    out: Any = ctx.Queue()
    ready = ctx.Event()
    sink = ctx.Process(target=subscribe_worker, args=(sink_url, messages, ready, out))
    sink.start()
    ready.wait(30)
    devices = [f"relay-{i}" for i in range(100)]
    started, _, _ = publish(load[0], "bench/relay/{}", devices, messages, 1, publishers, 0, load[1])
    received_at, got = out.get(timeout=900)
    sink.join()
    return float(got / (received_at - started))


async def kafka_alone(bootstrap: str, records: int) -> float:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic = f"bench.raw.{int(time.time())}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 4, 1)])
    await admin.close()
    value = b"x" * 300
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"g-{topic}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await producer.start()
    await consumer.start()
    started = time.perf_counter()
    sends = [await producer.send(topic, value, key=str(i % 500).encode()) for i in range(records)]
    await asyncio.gather(*sends)
    got = 0
    while got < records:
        batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
        got += sum(len(v) for v in batch.values())
    await consumer.commit()
    elapsed = time.perf_counter() - started
    await producer.stop()
    await consumer.stop()
    return records / elapsed


def copy_alone(url: str, rows: int) -> float:
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TEMP TABLE bench_copy (LIKE readings INCLUDING DEFAULTS)")
        now = datetime.now(UTC)
        data: list[tuple[Any, ...]] = [
            (
                UUID(int=0),
                now,
                "spo2",
                97.0,
                "%",
                "59408-5",
                None,
                f"d-{i % 500}",
                i,
                now,
                [],
            )
            for i in range(rows)
        ]
        started = time.perf_counter()
        target = replace(READINGS, table="bench_copy")  # the processor's own binary COPY
        with conn.cursor() as cur, cur.copy(target.statement) as copy:
            copy.set_types(target.types)
            for row in data:
                copy.write_row(row)
        conn.commit()
        return rows / (time.perf_counter() - started)


def publish_readings(
    load: tuple[str, str | None], devices: list[str], readings: int, per_message: int, publishers: int
) -> tuple[float, float, int]:
    """`readings` live readings on the devices' own topics, sequence numbers from now (ms), so
    they never collide with an earlier phase's: (first publish, last publish, messages)."""
    return publish(
        load[0],
        readings_topic("{}"),
        devices,
        readings // per_message,
        per_message,
        publishers,
        int(time.time() * 1000),
        load[1],
    )
