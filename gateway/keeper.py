"""Keeps the spool honest: drops rows PostgreSQL holds, replays the rest after Kafka lost them.

Confirmation asks the store itself, so it does not depend on Kafka offsets (which start again
at 0 on a broker that lost its data): a reading is stored once its (device, seq) has a
receipt, or the processor refused it as a dead letter of its own (unknown, revoked or
re-assigned device: `processor.pipeline`'s `orphan:`, `revoked:` and `reassigned:`
origins); a dead letter once its id is in the dead-letter table; a status once the device's
state is as new or newer (or the device is gone).

A broker that lost its data shows a new cluster id (the embedded one is started with a fresh
id each time; a real cluster keeps its id and never triggers a replay): the keeper then puts
the topics back and produces every row still in the spool again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import psycopg
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import Counter, Gauge

from gateway.records import BrokerEpoch, failed_future
from gateway.spool import LETTER, READING, STATUS, Mark, Spool, Spooled
from telehealth.kafka import TopicGuard, ensure_topics
from telehealth.settings import Settings
from telehealth.storage import spooled

log = logging.getLogger(__name__)

SPOOLED = Gauge("telehealth_gateway_spooled", "Records acknowledged and not yet known to be stored")
REPLAYED = Counter("telehealth_gateway_replayed", "Spooled records produced again after Kafka lost them")

#: rows confirmed per query
CHUNK = 5000
CLUSTER = "kafka_cluster_id"


class Keeper:
    def __init__(
        self,
        settings: Settings,
        spool: Spool,
        producer: AIOKafkaProducer,
        topics: TopicGuard,
        broker: BrokerEpoch,
    ) -> None:
        assert settings.database_url
        self._settings = settings
        self._spool = spool
        self._producer = producer
        self._topics = topics
        self._broker = broker  # the gateway's own: a replay and its acker share the lock
        self._db: psycopg.AsyncConnection[Any] | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._cursor = 0  # where the next confirmation round goes on from
        SPOOLED.set_function(lambda: spool.rows)

    async def run(self, stop: asyncio.Event, every_s: float = 0.5) -> None:
        """Every `every_s`: a look at the cluster id (a lost broker is replayed to at once), and
        a confirmation round; after rounds that confirmed nothing (the processor is away or
        behind) confirmation waits longer, up to 4 s, rather than reread the same rows."""
        loop = asyncio.get_running_loop()
        wait, next_confirm = every_s, 0.0
        try:
            while not stop.is_set():
                try:
                    await self._check_cluster()
                    if loop.time() >= next_confirm:
                        dropped = await self.confirm()
                        wait = every_s if dropped or not self._spool.rows else min(wait * 2, 4.0)
                        next_confirm = loop.time() + wait
                except (psycopg.Error, OSError) as exc:
                    log.warning("spool not confirmed against the database yet (%s)", exc)
                    await self._close_db()
                except Exception:  # the keeper must outlive any one round
                    log.exception("spool round failed; trying again")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), every_s)
        finally:
            await self._close_db()
            if self._admin is not None:
                with contextlib.suppress(Exception):
                    await self._admin.close()

    async def confirm(self, chunks: int = 2) -> int:
        """Drop spooled rows whose records the store holds; returns how many.

        Reads at most `chunks` chunks a round, going on from where the last round stopped and
        starting over once past the newest row: a chunk that cannot be confirmed (say, records
        the processor could not decode) never keeps the rows behind it in the spool."""
        dropped = 0
        for _ in range(chunks):
            rows = await self._spool.marks(CHUNK, self._cursor)
            if not rows:
                self._cursor = 0
                return dropped
            stored = await self._stored(rows)
            await self._spool.forget(stored)
            dropped += len(stored)
            if len(rows) < CHUNK:
                self._cursor = 0
                return dropped
            self._cursor = rows[-1][0]
        return dropped

    async def _stored(self, rows: list[tuple[int, Mark]]) -> list[int]:
        if self._db is None:
            assert self._settings.database_url
            self._db = await psycopg.AsyncConnection.connect(self._settings.database_url, autocommit=True)
        found: list[int] = []
        for kind in (READING, LETTER, STATUS):
            these = [(i, m) for i, m in rows if m.kind == kind]
            if not these:
                continue
            ids = [i for i, _ in these]
            if kind == READING:
                found += await spooled.readings_held(
                    self._db, ids, [m.device_id for _, m in these], [m.seq for _, m in these]
                )
            elif kind == LETTER:
                found += await spooled.letters_held(self._db, ids, [m.ref for _, m in these])
            else:
                found += await spooled.statuses_held(
                    self._db, ids, [m.device_id for _, m in these], [m.ref for _, m in these]
                )
        return found

    async def _close_db(self) -> None:
        if self._db is not None:
            with contextlib.suppress(Exception):
                await self._db.close()
            self._db = None

    async def _cluster_id(self) -> str | None:
        try:
            if self._admin is None:
                self._admin = AIOKafkaAdminClient(bootstrap_servers=self._settings.kafka_bootstrap)
                await self._admin.start()
            described = await asyncio.wait_for(self._admin.describe_cluster(), 5)
            return str(described.get("cluster_id") or "")
        except Exception as exc:  # the broker is away: ask again next round
            log.debug("Kafka cluster id not known (%s)", exc)
            if self._admin is not None:
                with contextlib.suppress(Exception):
                    await self._admin.close()
                self._admin = None
            return None

    async def _check_cluster(self) -> None:
        """A broker with another cluster id than the records were given to lost them."""
        current = await self._cluster_id()
        if not current:
            return
        known = await self._spool.get(CLUSTER)
        if known == current:
            return
        if known is None:
            await self._spool.put(CLUSTER, current)
            return
        async with self._broker.lock:  # no group is spooled meanwhile (`BrokerEpoch`)
            self._broker.n += 1
            log.warning(
                "Kafka is a new broker (cluster id %s, was %s): its records are gone; replaying %d spooled",
                current,
                known,
                self._spool.rows,
            )
            await ensure_topics(self._settings)
            await self.confirm(chunks=self._spool.rows // CHUNK + 1)  # what was stored need not go again
            await self.replay()
            await self._spool.put(CLUSTER, current)

    async def replay(self) -> int:
        """Produce every spooled row again, in the order they were acknowledged."""
        sent = 0
        after = 0
        while rows := await self._spool.oldest(CHUNK, after):
            delay = 0.2
            while True:
                results = await asyncio.gather(*await self._send_all(rows), return_exceptions=True)
                failed = [r for r in results if isinstance(r, BaseException)]
                if not failed:
                    break
                log.warning("replay of %d spooled record(s) refused (%s); retrying", len(failed), failed[0])
                await self._topics.check()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
            sent += len(rows)
            REPLAYED.inc(len(rows))
            after = rows[-1].id
        log.warning("replayed %d spooled record(s) to Kafka", sent)
        return sent

    async def _send_all(self, rows: list[Spooled]) -> list[asyncio.Future[Any]]:
        """Sends in order, up to the first one refused before it was queued: each of the rest
        would wait as long for the broker (the whole chunk goes again; the store keeps one)."""
        sends = []
        for row in rows:
            sends.append(future := await self._send(row))
            if future.done() and future.exception() is not None:
                break
        return sends

    async def _send(self, row: Spooled) -> asyncio.Future[Any]:
        try:
            future: asyncio.Future[Any] = await self._producer.send(row.topic, row.value, key=row.key)
        except Exception as exc:
            future = failed_future(exc)
        return future
