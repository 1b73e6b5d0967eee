"""The processor's own Prometheus metrics beyond the pipeline's counters (stored, duplicates,
dead letters by reason, in `processor.pipeline`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

RECEIVED = Counter("telehealth_processor_records_received", "Kafka records consumed", ["topic"])
BATCH_RECORDS = Histogram(
    "telehealth_processor_batch_records",
    "Records per batch taken from Kafka",
    buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 2000, 5000),
)
BATCH_SECONDS = Histogram(
    "telehealth_processor_batch_seconds",
    "From a batch taken from Kafka until it is durable in the database",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
BATCH_RETRIES = Counter(
    "telehealth_processor_batch_retries", "Batches retried because the database or registry was away"
)
IN_FLIGHT = Gauge("telehealth_processor_in_flight", "Records taken from Kafka and not yet committed")
LAG = Gauge("telehealth_processor_consumer_lag", "Records the broker holds beyond our position")
PARTITIONS = Gauge("telehealth_processor_assigned_partitions", "Partitions this processor holds", ["topic"])
ALERTS_PUBLISHED = Counter(
    "telehealth_processor_alerts_published", "Alert states sent to the alerts topic", ["status"]
)
ALERT_LATENCY = Histogram(
    "telehealth_processor_alert_latency_seconds",
    "From the measurement that opened or escalated an alert to the alert on the alerts topic",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


def observe_published(rows: Sequence[Mapping[str, Any]], now: datetime | None = None) -> None:
    """Count published alert states; time the ones a reading just opened or escalated.

    Only reading-driven alerts (with a sequence number) that are open and not escalated by
    the sweep are timed: acknowledgements, resolutions and device alerts have no reading to
    time from."""
    now = now or datetime.now(UTC)
    for row in rows:
        ALERTS_PUBLISHED.labels(str(row.get("status"))).inc()
        measured = row.get("triggered_at")
        if row.get("status") != "open" or row.get("seq") is None or row.get("escalated_at") is not None:
            continue
        if isinstance(measured, datetime):
            ALERT_LATENCY.observe(max(0.0, (now - measured).total_seconds()))
