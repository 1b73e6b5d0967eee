"""The processor's side of alert state, over `telehealth.storage.alerts` (which owns the tables):
the engine's actions carried out, what the rules need read back, and publishing.

Alerts are written in the batch's transaction and published afterwards from an outbox
(`published_at IS NULL`), so a crash between the two re-publishes rather than loses.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

import psycopg
from aiokafka import AIOKafkaProducer
from psycopg_pool import AsyncConnectionPool

from processor.alerts.device import Silence
from processor.alerts.engine import Act, Action, Key, RuleSet
from processor.alerts.glucose import RULE as LOW_RULE
from processor.alerts.glucose import EpisodeView, Stage
from processor.alerts.rules import Severity, rules_for
from telehealth.storage import alerts, devices
from telehealth.thresholds import Thresholds

ACTOR = "processor"
_CHANGE: dict[Act, alerts.Change] = {
    Act.OPEN: "open",
    Act.UPGRADE: "upgrade",
    Act.RENOTIFY: "renotify",
    Act.RESOLVE: "resolve",
}


async def open_alerts(conn: psycopg.AsyncConnection[Any], patient_ids: list[UUID]) -> dict[Key, Severity]:
    """The alerts not yet resolved for these patients: the engine's view of what is open."""
    return _severities(await alerts.unresolved(conn, patient_ids))


def _severities(rows: list[dict[str, Any]]) -> dict[Key, Severity]:
    return {(r["patient_id"], r["rule"]): Severity(r["severity"]) for r in rows}


@dataclass(frozen=True)
class AlertState:
    """What the rules need to know of a batch's patients, read in one round trip."""

    #: every unresolved alert's severity: what is open
    open: dict[Key, Severity]
    #: which device each open device alert (offline, battery) is about
    sources: dict[Key, str | None]
    #: each patient's unresolved hypoglycaemia alert: its stage, and whether it was acknowledged
    episodes: dict[UUID, EpisodeView]
    #: rule sets of the patients whose thresholds differ from the defaults
    rules: dict[UUID, RuleSet]


async def alert_state(conn: psycopg.AsyncConnection[Any], patient_ids: list[UUID]) -> AlertState:
    """The unresolved alerts and own thresholds of these patients, both queries sent together
    (pipeline mode) inside the caller's transaction."""
    if not patient_ids:
        return AlertState({}, {}, {}, {})
    rows, own = await alerts.unresolved_and_thresholds(conn, patient_ids)
    return AlertState(
        open=_severities(rows),
        sources={
            (r["patient_id"], r["rule"]): r["device_id"]
            for r in rows
            if r["rule"] in ("device_offline", "battery_low")
        },
        episodes={
            r["patient_id"]: EpisodeView(
                Stage.of(Severity(r["severity"]), r["code"]),
                r["status"] == "acknowledged",
                r["triggered_at"],
                r["acknowledged_at"],
            )
            for r in rows
            if r["rule"] == LOW_RULE
        },
        rules={patient: rules_for(Thresholds.model_validate(settings)) for patient, settings in own},
    )


async def apply(conn: psycopg.AsyncConnection[Any], actions: list[Action]) -> list[int]:
    """Carry out the engine's actions, each with its event row; returns the alert ids touched.

    Every statement is conditional on the alert's current state, so two processors acting on
    the same patient cannot open an alert twice or resolve one that is not open.
    """
    touched = []
    for action in actions:
        fields = {**action.__dict__, "severity": action.severity.value}
        note = f"opened: {action.message}" if action.act is Act.OPEN else action.message
        alert_id = await alerts.change(conn, _CHANGE[action.act], fields, ACTOR, note)
        if alert_id is not None:
            touched.append(alert_id)
    return touched


async def silences(conn: psycopg.AsyncConnection[Any], part: tuple[int, int] = (0, 1)) -> list[Silence]:
    """When each active device was last heard from (or provisioned, if never).

    `part` (i, n) takes the i-th of n slices of the patients (by their id's last byte), each
    patient's devices all in one slice: the stale-data rule judges a patient on all of them.
    """
    return [
        Silence(patient_id, device_id, last_at, timedelta(seconds=interval_s))
        for patient_id, device_id, interval_s, last_at in await devices.last_heard(conn, part)
    ]


async def escalate_overdue(conn: psycopg.AsyncConnection[Any], after: timedelta) -> list[int]:
    """Urgent alerts nobody acknowledged within `after` are escalated, once."""
    return await alerts.escalate_overdue(conn, after, ACTOR)


async def publish_pending(
    pool: AsyncConnectionPool,
    producer: AIOKafkaProducer,
    topic: str,
    observe: Callable[[list[dict[str, Any]]], None] | None = None,
) -> int:
    """Send unpublished alerts to Kafka, then mark them; at-least-once on the alerts topic.
    `observe` sees the rows once Kafka has them (metrics, logs)."""
    async with pool.connection() as conn:
        rows = await alerts.unpublished(conn)
        if not rows:
            return 0
        sends = [
            await producer.send(
                topic, json.dumps(row, default=str).encode(), key=str(row["patient_id"]).encode()
            )
            for row in rows
        ]
        for send in sends:
            await send
        if observe is not None:
            observe(rows)
        await alerts.mark_published(conn, [r["id"] for r in rows])
        await conn.commit()
    return len(rows)
