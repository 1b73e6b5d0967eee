"""Readiness from heartbeats: alive, and no backlog held without progress."""

from datetime import UTC, datetime, timedelta

import pytest
from aiokafka.errors import (
    BrokerNotAvailableError,
    CorruptRecordException,
    InvalidTimestampError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    KafkaUnavailableError,
    LeaderNotAvailableError,
    MessageSizeTooLargeError,
    NodeNotReadyError,
    NotEnoughReplicasError,
    NotLeaderForPartitionError,
    RecordListTooLargeError,
    RecordTooLargeError,
    RequestTimedOutError,
    UnknownError,
    UnknownTopicOrPartitionError,
)

from gateway.records import record_at_fault
from telehealth.heartbeat import Beat, Progress, assess

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ALIVE = timedelta(seconds=5)
STALL = timedelta(seconds=10)


def b(service: str, *, beat_ago: float = 0.5, moved_ago: float = 0.5, backlog: int = 0) -> Beat:
    return Beat(
        service,
        f"{service}-1",
        NOW - timedelta(seconds=beat_ago),
        NOW - timedelta(seconds=moved_ago),
        backlog,
    )


def verdict(*beats: Beat) -> dict[str, str]:
    return assess(beats, NOW, alive=ALIVE, stall=STALL)


def test_both_services_beating_and_moving_is_ready() -> None:
    assert verdict(b("gateway"), b("processor", backlog=40)) == {"gateway": "ok", "processor": "ok"}


def test_missing_or_silent_service_is_not_ready() -> None:
    assert verdict(b("gateway"))["processor"] == "no processor is running (no heartbeat)"
    got = verdict(b("gateway"), b("processor", beat_ago=30))
    assert got["processor"] == "no heartbeat from any processor for 30s"


def test_backlog_without_progress_is_a_stall_but_idle_is_not() -> None:
    got = verdict(b("gateway", moved_ago=35, backlog=12), b("processor"))
    assert got["gateway"].startswith("stalled: gateway gateway-1 holds 12 message(s)")
    assert "35s" in got["gateway"]
    assert verdict(b("gateway", moved_ago=3600, backlog=0), b("processor"))["gateway"] == "ok"


def test_one_live_instance_is_enough_but_any_stalled_one_is_reported() -> None:
    dead = Beat("processor", "old", NOW - timedelta(minutes=20), NOW - timedelta(minutes=20), 5)
    assert verdict(b("gateway"), b("processor"), dead)["processor"] == "ok"


def test_progress_sample_resets_when_idle() -> None:
    backlog = [0]
    progress = Progress(lambda: backlog[0])
    progress.moved_at -= 100
    assert progress.sample() == (0, 0.0)
    backlog[0] = 3
    count, stalled = progress.sample()
    assert count == 3 and stalled < 1


def test_only_errors_about_the_record_itself_are_its_fault() -> None:
    assert record_at_fault(MessageSizeTooLargeError())
    assert record_at_fault(TypeError("bad value"))
    assert not record_at_fault(KafkaConnectionError())
    assert not record_at_fault(KafkaTimeoutError())


@pytest.mark.parametrize(
    "broker_fault",
    [
        UnknownError(),
        NotLeaderForPartitionError(),
        UnknownTopicOrPartitionError(),
        RequestTimedOutError(),
        NodeNotReadyError(),
        KafkaUnavailableError(),
        BrokerNotAvailableError(),
        LeaderNotAvailableError(),
        NotEnoughReplicasError(),
        KafkaError("anything else the broker says"),
    ],
)
def test_a_broker_fault_is_never_the_records(broker_fault: Exception) -> None:
    """Held and retried, never a `kafka_rejected` dead letter (a Kafka restart once turned 686
    good readings into dead letters as unknown-topic and unknown-server errors)."""
    assert not record_at_fault(broker_fault)


@pytest.mark.parametrize(
    "refusal",
    [RecordTooLargeError(), RecordListTooLargeError(), CorruptRecordException(), InvalidTimestampError()],
)
def test_a_refusal_of_the_record_itself_is_its_fault(refusal: Exception) -> None:
    assert record_at_fault(refusal)
