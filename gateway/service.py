"""The gateway process: paho-mqtt in, aiokafka out, both on one asyncio loop.

paho runs on the loop (`gateway.mqtt_loop`), not in a thread of its own. Each message is
checked, sent to Kafka, and PUBACKed to the broker in arrival order once Kafka accepted every
record it produced: a Kafka outage holds acks back (the broker keeps the messages), it never
drops.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from aiokafka import AIOKafkaProducer
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client import Counter, Gauge

from gateway.keeper import Keeper
from gateway.mqtt_loop import BufferedClient, LoopDriver
from gateway.records import BrokerEpoch, Outgoing, Pending, failed_future, outcomes, record_at_fault
from gateway.session import broker_address, client_id, spool_path
from gateway.spool import LETTER, READING, STATUS, Mark, Spool
from telehealth import logs
from telehealth.checks import check_readings, check_status
from telehealth.contracts import DeadLetter, Reason, accepted_json
from telehealth.heartbeat import Progress, beat
from telehealth.kafka import TopicGuard, ensure_topics, make_producer
from telehealth.metrics import serve_metrics
from telehealth.mqtt import ssl_context
from telehealth.settings import Settings
from telehealth.storage.devices import CachedRegistry, RegistryUnavailable
from telehealth.topics import READINGS_FILTER, STATUS_FILTER, device_of, shared

log = logging.getLogger(__name__)

ACCEPTED = Counter("telehealth_gateway_readings_accepted", "Readings forwarded to Kafka")
REJECTED = Counter("telehealth_gateway_dead_letters", "Messages dead-lettered", ["reason"])
RETRIES = Counter("telehealth_gateway_kafka_retries", "Kafka sends retried after an error")
RECEIVED = Counter("telehealth_gateway_messages_received", "MQTT messages taken in", ["kind"])
FORWARDED = Counter(
    "telehealth_gateway_records_forwarded",
    "Records Kafka accepted (readings, status, dead letters)",
    ["topic"],
)
IN_FLIGHT = Gauge("telehealth_gateway_in_flight", "MQTT messages received and not yet acknowledged")


def _topic_of(message: mqtt.MQTTMessage) -> str:
    try:
        return message.topic
    except UnicodeDecodeError:
        return bytes(message._topic).decode("utf-8", errors="replace")


#: PUBACKs written to the spool together (one fsync)
_ACK_GROUP = 1000
#: with the spool on, a group that would hold fewer than `_ACK_GROUP_FEW` messages waits this
#: long for more (group commit): each group costs one fsync, and at a steady 2,000 messages/s
#: groups of one or two made the spool's writes the gateway's largest cost. Only the PUBACK
#: waits; the readings are in Kafka already.
_ACK_LINGER_S = 0.005
_ACK_GROUP_FEW = 50
#: a send Kafka has not answered after this long counts as failed and is sent again (the
#: producer times a request out after 10 s; a send after a broker restart was seen unanswered
#: for good, holding its acks)
ANSWER_WITHIN_S = 30.0


class Gateway:
    def __init__(
        self,
        settings: Settings,
        registry: CachedRegistry,
        producer: AIOKafkaProducer,
        spool: Spool | None = None,
    ) -> None:
        self._settings = settings
        self._spool = spool
        self._registry = registry
        self._producer = producer
        self._loop = asyncio.get_running_loop()
        # paho's read callback (on this loop) appends and wakes the intake.
        self._inbox: collections.deque[mqtt.MQTTMessage] = collections.deque()
        self._wake = asyncio.Event()
        self._pending: asyncio.Queue[Pending] = asyncio.Queue(maxsize=settings.gateway_max_inflight)
        self._in_flight = 0  # messages taken from the inbox and not yet acked
        self.topics = TopicGuard(settings)
        self.broker = BrokerEpoch()
        self.progress = Progress(self.backlog)
        self._client = self._make_client()
        # Labelled counters bound once: `labels()` per message costs a lock and a lookup.
        self._received = {kind: RECEIVED.labels(kind) for kind in ("readings", "status")}
        self._forwarded = {
            topic: FORWARDED.labels(topic)
            for topic in (settings.readings_topic, settings.status_topic, settings.deadletter_topic)
        }

    def _make_client(self) -> BufferedClient:
        settings = self._settings
        assert settings.mqtt_url
        client = BufferedClient(
            CallbackAPIVersion.VERSION2,
            client_id=client_id(settings),
            clean_session=False,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        address = broker_address(settings)
        client.username_pw_set(address.username or client_id(settings), address.password)
        if (context := ssl_context(address)) is not None:
            client.tls_set_context(context)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.error("MQTT connect refused: %s (check the gateway's broker login)", reason)
            return
        group = self._settings.gateway_share_group or None
        client.subscribe([(shared(READINGS_FILTER, group), 1), (shared(STATUS_FILTER, group), 1)])
        log.info("connected to MQTT, subscribing (share group %s)", group)

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, reasons: list[Any], _p: Any) -> None:
        """Logged on the broker's answer, so "subscribed" means messages now reach this gateway."""
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:
            log.error("MQTT subscription refused: %s (check the gateway's broker login)", ", ".join(refused))
        else:
            group = self._settings.gateway_share_group or None
            log.info("subscribed to the device topics (share group %s)", group)

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        self._inbox.append(message)
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        address = broker_address(self._settings)
        disconnect = asyncio.Event()
        connection = asyncio.create_task(
            LoopDriver(self._client).run(address.host, address.port, 30, disconnect)
        )
        intake = asyncio.create_task(self._intake())
        acker = asyncio.create_task(self._acker())
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({intake, acker, connection, stopping}, return_when=asyncio.FIRST_COMPLETED)
            for task in (intake, acker, connection):
                if task.done():
                    # Unacked messages stay with the broker; a supervisor restarts us.
                    raise RuntimeError("gateway task stopped unexpectedly") from task.exception()
        finally:
            stopping.cancel()
            disconnect.set()
            with contextlib.suppress(Exception):
                await connection
            intake.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await intake
            await self._pending.join()
            acker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await acker

    async def _intake(self) -> None:
        while True:
            while self._inbox:
                message = self._inbox[0]
                try:
                    with logs.context(device_id=device_of(_topic_of(message)), mqtt_mid=message.mid):
                        records = await self._route(message)
                except RegistryUnavailable as exc:
                    log.warning("%s; holding %d message(s) and retrying", exc, len(self._inbox))
                    await asyncio.sleep(1.0)
                    continue
                except Exception as exc:  # one message must never stop the gateway
                    log.exception("could not route a message on %s; dead-lettering it", _topic_of(message))
                    detail = f"gateway could not route the message: {type(exc).__name__}: {exc}"
                    records = [self._letter(message, Reason.INTERNAL_ERROR, detail)]
                self._inbox.popleft()
                self._received["status" if _topic_of(message).endswith("/status") else "readings"].inc()
                self._in_flight += 1
                epoch = self.broker.n
                sends = [await self._send(r) for r in records]
                await self._pending.put(Pending(message, records, sends, epoch))
            self._wake.clear()  # the inbox is empty; paho's callback runs only while we await
            await self._wake.wait()

    async def _route(self, message: mqtt.MQTTMessage) -> list[Outgoing]:
        settings = self._settings
        now = datetime.now(UTC)
        device_id = device_of(message.topic)
        if device_id is not None:
            await self._registry.get(device_id)
        payload = bytes(message.payload)
        rejected: Sequence[DeadLetter]
        records: list[Outgoing] = []
        if message.topic.endswith("/status"):
            result = check_status(message.topic, payload, now, self._registry.peek)
            if isinstance(result, DeadLetter):
                rejected = [result]
            else:
                rejected = []
                records.append(
                    Outgoing(
                        settings.status_topic,
                        result.device_id.encode(),
                        result.model_dump_json().encode(),
                        mark=Mark(STATUS, result.device_id, ref=result.received_at.isoformat()),
                    )
                )
        else:
            verdict = check_readings(message.topic, payload, now, self._registry.peek)
            rejected = verdict.rejected
            for reading in verdict.accepted:
                log.debug("forwarding reading", extra={"device_id": reading.device_id, "seq": reading.seq})
                records.append(
                    Outgoing(
                        settings.readings_topic,
                        reading.device_id.encode(),
                        accepted_json(reading, verdict.received_at),
                        mark=Mark(READING, reading.device_id, reading.seq),
                    )
                )
            ACCEPTED.inc(len(verdict.accepted))
        for letter in rejected:
            REJECTED.labels(letter.reason.value).inc()
            log.info(
                "dead letter %s from %s: %s",
                letter.reason.value,
                letter.device_id,
                letter.detail,
                extra={"reason": letter.reason.value},
            )
            records.append(self._letter_record(letter, message))
        return records

    def _letter_record(self, letter: DeadLetter, message: mqtt.MQTTMessage) -> Outgoing:
        key = (letter.device_id or _topic_of(message)).encode(errors="replace")
        mark = Mark(LETTER, ref=letter.letter_id)
        return Outgoing(self._settings.deadletter_topic, key, letter.model_dump_json().encode(), letter, mark)

    def _letter(self, message: mqtt.MQTTMessage, reason: Reason, detail: str) -> Outgoing:
        topic = _topic_of(message)
        letter = DeadLetter.capture(
            reason,
            detail,
            source_topic=topic,
            device_id=device_of(topic),
            received_at=datetime.now(UTC),
            raw=bytes(message.payload),
        )
        REJECTED.labels(reason.value).inc()
        return self._letter_record(letter, message)

    def _instead_of(self, record: Outgoing, exc: BaseException, message: mqtt.MQTTMessage) -> Outgoing:
        """What to resend for a record Kafka refused for what it is (see `record_at_fault`)."""
        if record.letter is None:
            detail = f"Kafka refused the record for {record.topic}: {exc}"
            return self._letter(message, Reason.KAFKA_REJECTED, detail)
        shorter = record.letter.model_copy(update={"raw": record.letter.raw[:1024]})
        if shorter.raw == record.letter.raw:
            return record  # already short: the fault is not this letter's; keep holding
        return Outgoing(record.topic, record.key, shorter.model_dump_json().encode(), shorter, record.mark)

    async def _send(self, record: Outgoing) -> asyncio.Future[Any]:
        """Always a future: a send refused up front becomes a failed future the acker judges."""
        try:
            future: asyncio.Future[Any] = await self._producer.send(
                record.topic, record.value, key=record.key
            )
        except Exception as exc:
            future = failed_future(exc)
        return future

    async def _acker(self) -> None:
        """PUBACK in arrival order, each only after all of its records are in Kafka and, with
        the spool on, on disk in the spool (one fsynced write per group of acks)."""
        while True:
            group = [await self._pending.get()]
            if self._spool is not None and self._pending.qsize() < _ACK_GROUP_FEW:
                await asyncio.sleep(_ACK_LINGER_S)
            while len(group) < _ACK_GROUP and not self._pending.empty():
                group.append(self._pending.get_nowait())
            await self._until_accepted(group)
            if self._spool is not None:
                await self.broker.spool(group, self._spool, self._send_again)
            for item in group:
                self._client.ack(item.message.mid, item.message.qos)
                for record in item.records:
                    self._forwarded[record.topic].inc()
                self._in_flight -= 1
                self._pending.task_done()
            self.progress.moved()

    async def _send_again(self, stale: list[Pending]) -> None:
        for item in stale:
            item.sends = [await self._send(r) for r in item.records]
        await self._until_accepted(stale)

    async def _until_accepted(self, group: list[Pending]) -> None:
        """Wait until Kafka accepted every record of the group's messages. A record Kafka
        refuses for what it is becomes a bounded dead letter; anything else (broker away,
        timeouts, unknown topic or server error after a broker restart) is resent, and the
        acks are held. One backoff for the whole group: after a broker restart every record
        of a group can fail once, and waiting message by message would crawl."""
        delay = 0.2
        while True:
            failed = [(item, results) for item in group if (results := await self._failures(item))]
            if not failed:
                return
            count = sum(len(results) for _, results in failed)
            first = next(iter(failed[0][1].values()))
            log.warning("Kafka refused %d record(s) (%s); holding the MQTT acks and resending", count, first)
            RETRIES.inc(count)
            # Topics first: a send to a topic the broker lost waits for its metadata (up to the
            # request timeout) before it fails, and a round of such sends one by one stalled
            # the gateway for minutes after a Kafka restart.
            with contextlib.suppress(TimeoutError):  # the next round checks again
                await asyncio.wait_for(self.topics.check(), ANSWER_WITHIN_S)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)  # resumes within about a second of Kafka being back
            down: BaseException | None = None
            for item, results in failed:
                down = await self._resend(item, results, down)

    async def _failures(self, item: Pending) -> dict[int, BaseException]:
        """The message's sends that failed, by record index, once every send has an answer."""
        results = await outcomes(item.sends, within=ANSWER_WITHIN_S)
        return {i: r for i, r in enumerate(results) if isinstance(r, BaseException)}

    async def _resend(
        self, item: Pending, failed: dict[int, BaseException], down: BaseException | None
    ) -> BaseException | None:
        """Send the failed records again (a record refused for what it is as its dead letter).

        Once one send is refused before it is even queued (Kafka away, or no metadata for the
        topic within the request timeout), the rest of the round is not tried: each would wait
        as long. Returns that refusal, for the next message of the round."""
        records, sends = list(item.records), list(item.sends)
        for i, exc in failed.items():
            if record_at_fault(exc):
                log.error("Kafka refused a record for %s (%s); dead-lettering", records[i].topic, exc)
                records[i] = self._instead_of(records[i], exc, item.message)
            if down is None:
                sends[i] = await self._send(records[i])
                if sends[i].done() and (refused := sends[i].exception()) is not None:
                    down = refused
            else:
                sends[i] = failed_future(down)
        item.records, item.sends = records, sends
        return down

    def backlog(self) -> int:
        """Messages received and not yet acknowledged to the broker."""
        return len(self._inbox) + self._in_flight


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    settings.require("mqtt_url", "kafka_bootstrap", "database_url")
    assert settings.database_url
    serve_metrics(settings, "gateway")
    await ensure_topics(settings)
    producer = make_producer(settings)
    await producer.start()
    spool = Spool(spool_path(settings), settings.gateway_spool_max_rows) if settings.gateway_spool else None
    try:
        registry = CachedRegistry(settings.database_url, ttl_s=settings.device_cache_ttl_s)
        gateway = Gateway(settings, registry, producer, spool)
        IN_FLIGHT.set_function(gateway.backlog)
        heart = asyncio.create_task(
            beat(settings.database_url, "gateway", gateway.progress, stop, settings.heartbeat_s)
        )
        keeping = None
        if spool is not None:
            log.info("spool %s holds %d record(s) not yet known to be stored", spool.path, spool.rows)
            keeper = Keeper(settings, spool, producer, gateway.topics, gateway.broker)
            keeping = asyncio.create_task(keeper.run(stop))
        try:
            await gateway.run(stop)
        finally:
            for task in (heart, keeping):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
    finally:
        await producer.stop()
        if spool is not None:
            spool.close()
