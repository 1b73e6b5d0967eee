"""The processor process rides out its servers: a broker or database fault while the consumer
starts or commits rebuilds the consumer in the same process, it never exits (an exit under
`telehealth up` costs a restart with backoff; elsewhere it stops storing altogether)."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError, UnknownError
from aiokafka.structs import ConsumerRecord

from processor import service
from processor.watch import FetcherStopped
from telehealth.kafka import ClusterWatch
from telehealth.settings import Settings


def _settings() -> Settings:
    return Settings(kafka_bootstrap="127.0.0.1:1", database_url="postgresql://nobody@127.0.0.1:1/none")


@pytest.mark.parametrize(
    "fault",
    [
        KafkaConnectionError("gone"),
        UnknownError(),
        psycopg.OperationalError("gone"),
        TimeoutError(),
        FetcherStopped("fetch task ended"),
    ],
    ids=["kafka-connection", "kafka-unknown", "database", "timeout", "fetcher-stopped"],
)
async def test_a_server_fault_builds_the_consumer_again(
    monkeypatch: pytest.MonkeyPatch, fault: Exception
) -> None:
    calls: list[bool] = []
    stop = asyncio.Event()

    async def once(
        settings: Settings, outer: asyncio.Event, replaced: asyncio.Event, fresh: bool, cluster: ClusterWatch
    ) -> None:
        calls.append(fresh)
        if len(calls) == 1:
            replaced.set()  # the broker had been replaced when the fault struck
            raise fault
        stop.set()

    monkeypatch.setattr(service, "_serve_once", once)
    await asyncio.wait_for(service.serve(_settings(), stop), 10)
    # Built again, and told the broker was replaced: it reads the new broker from the start.
    assert calls == [False, True]


async def test_every_consumer_is_watched_against_the_broker_its_predecessor_saw(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One cluster watch for all the consumers of a process: a consumer that failed before its
    watch saw a new broker leaves the id it knew to its successor."""
    watches: list[ClusterWatch] = []
    stop = asyncio.Event()

    async def once(
        settings: Settings, outer: asyncio.Event, replaced: asyncio.Event, fresh: bool, cluster: ClusterWatch
    ) -> None:
        watches.append(cluster)
        if len(watches) == 1:
            cluster.known = "the-broker-before"
            raise KafkaConnectionError("gone")
        stop.set()

    monkeypatch.setattr(service, "_serve_once", once)
    await asyncio.wait_for(service.serve(_settings(), stop), 10)
    assert len(watches) == 2 and watches[0] is watches[1]
    assert watches[1].known == "the-broker-before"


async def test_a_fault_of_its_own_still_ends_the_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug is not retried in a loop: it exits, and the supervisor's budget sees it."""

    async def once(
        settings: Settings, outer: asyncio.Event, replaced: asyncio.Event, fresh: bool, cluster: ClusterWatch
    ) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(service, "_serve_once", once)
    with pytest.raises(KeyError):
        await asyncio.wait_for(service.serve(_settings(), asyncio.Event()), 10)


class Consumer:
    """aiokafka's consumer as `_commit` sees it, with a broker that fails the commit."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition("telehealth.readings", 0)}

    async def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        raise self.error


@pytest.mark.parametrize(
    "error", [KafkaConnectionError("gone"), UnknownError()], ids=["connection", "unknown"]
)
async def test_a_failed_commit_leaves_the_batch_to_replay(error: Exception) -> None:
    record: ConsumerRecord[Any, Any] = ConsumerRecord(
        "telehealth.readings", 0, 7, 0, 0, b"k", b"v", None, 1, 1, []
    )
    await service._commit(Consumer(error), [record])  # type: ignore[arg-type]


async def test_a_consumer_stuck_after_stop_is_cancelled(monkeypatch: pytest.MonkeyPatch) -> None:
    """A call into a replaced broker that never returns does not keep the next consumer from
    starting: past the grace period the consumer is cancelled (its batch replays)."""
    monkeypatch.setattr(service, "STOP_GRACE_S", 0.2)
    stop = asyncio.Event()

    async def stuck() -> None:
        await asyncio.Event().wait()  # e.g. a commit retrying for ever

    consuming = asyncio.create_task(stuck())
    stop.set()
    await asyncio.wait_for(service._until_stopped(consuming, stop), 5)
    assert consuming.cancelled()


async def test_a_consumer_that_ends_by_itself_is_not_cancelled() -> None:
    async def ends() -> None:
        await asyncio.sleep(0.05)

    consuming = asyncio.create_task(ends())
    await asyncio.wait_for(service._until_stopped(consuming, asyncio.Event()), 5)
    assert consuming.done() and not consuming.cancelled()


async def test_a_stuck_consumer_is_built_again_with_a_longer_fetch_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The embedded Tansu answers a fetch empty once gathering it takes longer than its wait."""
    waits: list[int] = []
    stop = asyncio.Event()

    async def once(
        settings: Settings, outer: asyncio.Event, replaced: asyncio.Event, fresh: bool, cluster: ClusterWatch
    ) -> None:
        waits.append(settings.processor_batch_wait_ms)
        if len(waits) < 3:
            raise FetcherStopped("took nothing for 20 s while the broker holds 1000 record(s)")
        stop.set()

    monkeypatch.setattr(service, "_serve_once", once)
    await asyncio.wait_for(service.serve(_settings(), stop), 10)
    assert waits == [20, 40, 80]
