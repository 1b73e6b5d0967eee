"""The processor process: a Kafka consumer group feeding the pipeline, offsets committed last."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.structs import ConsumerRecord
from psycopg_pool import AsyncConnectionPool

from processor import metrics, sink
from processor.ahead import Ahead, offsets
from processor.alerts import store as alert_store
from processor.alerts.device import stale_actions
from processor.alerts.outbox import AlertOutbox
from processor.decode import Batch
from processor.isolate import isolate
from processor.pipeline import Pipeline, Report, consent_stage
from processor.watch import FetcherStopped, Lag, Stall, longer_fetch_wait
from telehealth import logs
from telehealth.heartbeat import beat, instance_name
from telehealth.kafka import ClusterWatch, ensure_topics, make_producer
from telehealth.metrics import serve_metrics
from telehealth.settings import Settings
from telehealth.storage import open_pool
from telehealth.storage.bulk import remember_small_values
from telehealth.storage.devices import CachedRegistry, RegistryUnavailable

log = logging.getLogger(__name__)

#: The alert outbox is read this often besides after each batch that changed an alert.
PUBLISH_EVERY_S = 0.25
#: The sweep runs over this many slices of the patients in turn, one slice every
#: `alert_sweep_s / SWEEP_SLICES`: each patient is still checked every `alert_sweep_s`, and the
#: consumer loop, which the sweep holds up, pauses for a tenth as long at a time (the whole
#: sweep over ~1,500 devices took 17-71 ms, and it grows with the devices).
SWEEP_SLICES = 10
#: each step of stopping a consumer (tasks, clients, pools) is given this long
STOP_WITHIN_S = 5.0
#: a consumer asked to stop is given this long to finish its batch before it is cancelled
STOP_GRACE_S = 10.0


#: failures of the servers around the processor, never of its own logic: the consumer is
#: built again (with backoff) instead of the process exiting and waiting for a restart
SERVER_FAULTS: tuple[type[BaseException], ...] = (KafkaError, psycopg.OperationalError, OSError, TimeoutError)


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    settings.require("kafka_bootstrap", "database_url")
    assert settings.database_url
    serve_metrics(settings, "processor")
    fresh = False
    delay = 0.5
    cluster = ClusterWatch()  # kept from consumer to consumer: a replacement is never missed
    while not stop.is_set():
        replaced = asyncio.Event()
        try:
            await _serve_once(settings, stop, replaced, fresh, cluster)
        except SERVER_FAULTS as exc:
            # e.g. the broker died while the consumer started or committed. Nothing was
            # committed past what is durable, so the next consumer replays what is not.
            name = type(exc).__name__
            log.warning("consumer stopped by a server fault (%s: %s); again in %.1fs", name, exc, delay)
            if isinstance(exc, FetcherStopped):
                settings = longer_fetch_wait(settings)
            fresh = fresh or replaced.is_set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, 5.0)
            continue
        delay = 0.5
        fresh = replaced.is_set()
        if fresh and not stop.is_set():
            log.warning("the Kafka broker was replaced; consuming again with a new consumer")


async def _serve_once(
    settings: Settings, outer_stop: asyncio.Event, replaced: asyncio.Event, fresh: bool, cluster: ClusterWatch
) -> None:
    """Consume until asked to stop, or until the broker was replaced (`cluster`)."""
    assert settings.database_url
    stop = asyncio.Event()
    watching = asyncio.create_task(cluster.watch(settings, replaced))

    async def either() -> None:
        waits = {asyncio.ensure_future(outer_stop.wait()), asyncio.ensure_future(replaced.wait())}
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        stop.set()

    relay = asyncio.create_task(either())
    consuming = asyncio.create_task(_consume(settings, stop, fresh), name="consume")
    try:
        await _until_stopped(consuming, stop)
    finally:
        for task in (watching, relay):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _until_stopped(consuming: asyncio.Task[None], stop: asyncio.Event) -> None:
    """Wait for the consumer; once asked to stop, give it `STOP_GRACE_S` to finish the batch
    in hand, then cancel it. A call into a broker that was replaced can wait without end (a
    commit retries "retriable" errors for ever), and a consumer that never ends keeps its
    successor from starting: storing would stop for good. Cancelled mid-batch, the batch's
    offsets were never committed, so it replays."""
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({consuming, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if not consuming.done():
        await asyncio.wait({consuming}, timeout=STOP_GRACE_S)
    if not consuming.done():
        log.warning("consumer busy %.0f s after stop; cancelling it. %s", STOP_GRACE_S, _stack(consuming))
        consuming.cancel()
        await asyncio.wait({consuming})
        return
    consuming.result()  # its own failure, if any, is the caller's


#: after a broker was replaced, partitions assigned within this many seconds are read from
#: their start
REWIND_S = 60.0


async def _consume(settings: Settings, stop: asyncio.Event, fresh: bool = False) -> None:
    """`fresh`: the broker was replaced. Offsets committed to it in the moment before the old
    consumer noticed count positions of the lost broker's logs, ahead of everything the new one
    holds (the replayed spool), and a consumer waiting there would wait until the new logs grew
    that long. So every partition is read from its start: the new broker holds only what came
    after the restart, and storing it again changes nothing."""
    assert settings.database_url
    await ensure_topics(settings)
    async with contextlib.AsyncExitStack() as closing:  # what started is stopped, whatever failed
        await _consume_with(settings, stop, fresh, closing)


async def _consume_with(
    settings: Settings, stop: asyncio.Event, fresh: bool, closing: contextlib.AsyncExitStack
) -> None:
    assert settings.database_url
    pool = await open_pool(settings.database_url, max_size=4, configure=sink.prepare)
    closing.push_async_callback(_stop_bounded, pool.close)
    producer = make_producer(settings, linger_ms=0)  # alerts only: each one as soon as possible
    closing.push_async_callback(_stop_bounded, producer.stop)
    consumer = AIOKafkaConsumer(
        settings.readings_topic,
        settings.deadletter_topic,
        settings.status_topic,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=settings.processor_group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
        # Latency: do not let the broker park an empty fetch for aiokafka's default 500 ms.
        fetch_max_wait_ms=settings.processor_batch_wait_ms,
        # A killed processor's partitions move to the others (or its successor) this soon.
        session_timeout_ms=settings.processor_session_timeout_ms,
        group_instance_id=settings.processor_instance_id or None,
        heartbeat_interval_ms=max(100, settings.processor_session_timeout_ms // 3),
        # Topics put back after a broker lost them are found within this (aiokafka: 5 min).
        metadata_max_age_ms=2000,
    )
    closing.push_async_callback(_stop_bounded, consumer.stop)
    await producer.start()
    await consumer.start()
    outbox = AlertOutbox(pool, producer, settings.alerts_topic)
    registry = CachedRegistry(settings.database_url, settings.device_cache_ttl_s)
    pipeline = Pipeline(settings, pool, registry, outbox=outbox, consent=consent_stage(settings))
    publish = outbox.publish
    listener = asyncio.create_task(pipeline.consent.cache.listen(settings.database_url, stop), name="listen")
    closing.push_async_callback(_cancel, listener)
    # Its own connection: a consent step waiting on a lock never holds one storage needs.
    consent_pool = await open_pool(settings.database_url, max_size=1, configure=_remember)
    closing.push_async_callback(_stop_bounded, consent_pool.close)
    consent_step = asyncio.create_task(pipeline.consent.run(consent_pool, stop), name="consent")
    closing.push_async_callback(_cancel, consent_step)
    log.info("processor %s consuming as group %s", instance_name(), settings.processor_group)
    loop = asyncio.get_running_loop()
    next_sweep = next_publish = loop.time()
    rewound: set[TopicPartition] | None = set() if fresh else None
    rewind_until = loop.time() + REWIND_S
    next_slice = 0
    ahead = Ahead(consumer, pipeline, settings, publish)
    lag = Lag(consumer, ahead)
    stall = Stall(consumer)
    metrics.IN_FLIGHT.set_function(lambda: lag.in_flight + len(ahead))
    _watch_assignment(consumer, settings)
    heart = asyncio.create_task(
        beat(settings.database_url, "processor", lag.progress, stop, settings.heartbeat_s), name="heartbeat"
    )
    closing.push_async_callback(_cancel, heart)
    while not stop.is_set():
        if rewound is not None:
            if loop.time() > rewind_until:
                rewound = None
            elif new := consumer.assignment() - rewound:
                await consumer.seek_to_beginning(*new)
                rewound |= new
                log.info("read %d partition(s) of the new broker from their start", len(new))
        held = len(ahead)
        batches = await consumer.getmany(
            timeout_ms=0 if held else settings.processor_batch_wait_ms,
            max_records=max(1, settings.processor_batch_max - held),
        )
        taken = [r for part in batches.values() for r in part]
        await stall.check(len(taken) + held)
        ahead.add(taken)
        records, decoded = ahead.take(consumer.assignment())
        lag.in_flight = len(records)
        await lag.refresh()
        if records:
            began = time.monotonic()
            with logs.context(batch_id=batch_id(records)):
                _count(records)
                work = asyncio.ensure_future(_until_durable(pipeline, records, decoded, stop))
                try:  # meanwhile: take, decode and store urgent readings ahead
                    await ahead.while_in_flight(work, decoded.devices())
                finally:
                    await asyncio.wait({work})  # the batch in flight ends, whatever happened ahead
                report = work.result()
                if report is None:
                    break
                metrics.BATCH_SECONDS.observe(time.monotonic() - began)
                if report.alerts:  # alerts first: latency
                    await publish()
                await _commit(consumer, records)
                lag.in_flight = 0
                lag.progress.moved()
        swept = loop.time() >= next_sweep
        if swept:
            next_sweep = loop.time() + settings.alert_sweep_s / SWEEP_SLICES
            escalate_after = timedelta(seconds=settings.alert_escalate_after_s)
            await _sweep(pool, escalate_after, (next_slice, SWEEP_SLICES))
            next_slice = (next_slice + 1) % SWEEP_SLICES
        # What no batch of ours touched (the sweep's changes, clinicians' acknowledgements
        # through the API, a send that failed) is published on a timer, not every batch.
        if swept or loop.time() >= next_publish:
            next_publish = loop.time() + PUBLISH_EVERY_S
            await publish()


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    await asyncio.wait({task}, timeout=STOP_WITHIN_S)
    if not task.done():
        log.warning(
            "task %s did not stop within %.0f s; left behind. %s",
            task.get_name(),
            STOP_WITHIN_S,
            _stack(task),
        )
    elif not task.cancelled() and task.exception() is not None:
        log.debug("task %s ended with %r", task.get_name(), task.exception())


def _stack(task: asyncio.Task[Any]) -> str:
    """Where a task that would not stop is waiting, for the log."""
    where = io.StringIO()
    task.print_stack(file=where)
    return where.getvalue()


async def _stop_bounded(stop: Callable[[], Any]) -> None:
    """Each step of the clean-up is bounded: a consumer of a broker that went away can hang in
    leaving its group, and a hung clean-up would keep the next consumer from starting."""
    try:
        await asyncio.wait_for(stop(), STOP_WITHIN_S)
    except Exception as exc:
        name = getattr(stop, "__qualname__", stop)
        log.warning("%s did not finish cleanly (%s: %s)", name, type(exc).__name__, exc)


async def _remember(conn: psycopg.AsyncConnection[Any]) -> None:
    remember_small_values(conn)


def batch_id(records: list[ConsumerRecord[Any, Any]]) -> str:
    """Names a batch by where it starts in Kafka: `<topic>:<partition>:<offset>` of its first
    record, plus its size, so a log line leads to the records (and replays share the name)."""
    first = records[0]
    return f"{first.topic}:{first.partition}:{first.offset}+{len(records)}"


def _count(records: list[ConsumerRecord[Any, Any]]) -> None:
    metrics.BATCH_RECORDS.observe(len(records))
    topics: dict[str, int] = {}
    for r in records:
        topics[r.topic] = topics.get(r.topic, 0) + 1
    for topic, n in topics.items():
        metrics.RECEIVED.labels(topic).inc(n)
    if log.isEnabledFor(logging.DEBUG):
        keys = ", ".join(
            f"{(r.key or b'').decode(errors='replace')}@{r.partition}:{r.offset}" for r in records
        )
        log.debug("batch of %d: %s", len(records), keys)


def _watch_assignment(consumer: AIOKafkaConsumer, settings: Settings) -> None:
    """Partitions held per topic, as a gauge (read at scrape time, on the listener's thread)."""

    def held(topic: str) -> Callable[[], float]:
        def count() -> float:
            for _ in range(3):  # the loop may be changing the assignment while we read it
                with contextlib.suppress(RuntimeError):
                    return sum(1 for tp in list(consumer.assignment()) if tp.topic == topic)
            return float("nan")

        return count

    for topic in (settings.readings_topic, settings.status_topic, settings.deadletter_topic):
        metrics.PARTITIONS.labels(topic).set_function(held(topic))


async def _commit(consumer: AIOKafkaConsumer, records: list[ConsumerRecord[Any, Any]]) -> None:
    """Commit the batch's own offsets (not the consumer's position: records taken ahead are
    not durable yet), for the partitions still ours."""
    assigned = consumer.assignment()
    mine = {tp: at for tp, at in offsets(records).items() if tp in assigned}
    try:
        if mine:
            await consumer.commit(mine)
    except CommitFailedError as exc:
        log.warning("offset commit refused after a rebalance (%s); batch will replay", exc)
    except KafkaError as exc:  # the broker went away mid-commit: nothing is lost, only replayed
        log.warning("offset commit failed (%s: %s); batch will replay", type(exc).__name__, exc)


async def _until_durable(
    pipeline: Pipeline, records: list[ConsumerRecord[Any, Any]], decoded: Batch, stop: asyncio.Event
) -> Report | None:
    """Retry the batch while the database is away; None if asked to stop before it landed.

    Offsets stay uncommitted until the batch is durable, so an unlanded batch replays.
    """
    delay = 0.2
    while not stop.is_set():
        try:
            report = await isolate(pipeline, records, decoded)
            log.debug("batch %s", report)
            return report
        except (psycopg.OperationalError, RegistryUnavailable) as exc:
            log.warning("database unavailable (%s); retrying batch of %d in %.1fs", exc, len(records), delay)
            metrics.BATCH_RETRIES.inc()
            await asyncio.sleep(delay)
            # At most 1 s between tries: storing resumes within about a second of the database
            # being back (the pool's own reconnect included), not after a long backoff.
            delay = min(delay * 2, 1.0)
    return None


async def _sweep(pool: AsyncConnectionPool, escalate_after: timedelta, part: tuple[int, int]) -> None:
    """What no message triggers: stale data (for one slice of the patients), and escalation of
    unacknowledged urgent alerts (all of them, each time)."""
    try:
        async with pool.connection() as conn, conn.transaction():
            quiet = await alert_store.silences(conn, part)
            open_now = await alert_store.open_alerts(conn, list({s.patient_id for s in quiet}))
            stale = await alert_store.apply(conn, stale_actions(quiet, open_now, datetime.now(UTC)))
            escalated = await alert_store.escalate_overdue(conn, escalate_after)
        if stale or escalated:
            log.info("sweep: %d stale-data change(s), %d escalation(s)", len(stale), len(escalated))
    except psycopg.OperationalError as exc:
        log.warning("alert sweep skipped: %s", exc)
