"""Opening alerts in the database (one open per patient and rule) and publishing them.

Alerts are written in the batch's transaction and published afterwards from an outbox
(`published_at IS NULL`), so a crash between the two re-publishes rather than loses.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from uuid import UUID

import psycopg
from aiokafka import AIOKafkaProducer
from psycopg.rows import dict_row, tuple_row
from psycopg_pool import AsyncConnectionPool

from processor.alerts.device import Silence
from processor.alerts.engine import Act, Action, Key, RuleSet
from processor.alerts.rules import Severity, rules_for
from telehealth.thresholds import Thresholds

ACTOR = "processor"

_OPEN = """
INSERT INTO alerts (patient_id, rule, severity, message, code, value, device_id, seq, triggered_at)
VALUES (%(patient_id)s, %(rule)s, %(severity)s, %(message)s, %(code)s, %(value)s,
        %(device_id)s, %(seq)s, %(measured_at)s)
ON CONFLICT (patient_id, rule) WHERE status <> 'resolved' DO NOTHING
RETURNING id
"""

_ESCALATE = """
UPDATE alerts SET severity = 'urgent', message = %(message)s, value = %(value)s,
                  device_id = %(device_id)s, seq = %(seq)s, triggered_at = %(measured_at)s,
                  published_at = NULL
WHERE patient_id = %(patient_id)s AND rule = %(rule)s AND status <> 'resolved' AND severity = 'warning'
RETURNING id
"""

_RESOLVE = """
UPDATE alerts SET status = 'resolved', resolved_at = now(), resolved_by = 'processor',
                  resolution = 'auto', published_at = NULL
WHERE patient_id = %(patient_id)s AND rule = %(rule)s AND status <> 'resolved'
RETURNING id
"""

_SQL = {Act.OPEN: _OPEN, Act.ESCALATE: _ESCALATE, Act.RESOLVE: _RESOLVE}
_EVENT = {Act.OPEN: "open", Act.ESCALATE: "open", Act.RESOLVE: "resolved"}


async def open_alerts(conn: psycopg.AsyncConnection[Any], patient_ids: list[UUID]) -> dict[Key, Severity]:
    """The alerts not yet resolved for these patients: the engine's view of what is open."""
    if not patient_ids:
        return {}
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(
            "SELECT patient_id, rule, severity FROM alerts"
            " WHERE status <> 'resolved' AND patient_id = ANY(%s)",
            (patient_ids,),
        )
        return {(r[0], r[1]): Severity(r[2]) for r in await cur.fetchall()}


async def device_alert_sources(
    conn: psycopg.AsyncConnection[Any], patient_ids: list[UUID]
) -> dict[Key, str | None]:
    """Which device each open device alert (offline, battery) is about."""
    if not patient_ids:
        return {}
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(
            "SELECT patient_id, rule, device_id FROM alerts WHERE status <> 'resolved'"
            " AND rule IN ('device_offline', 'battery_low') AND patient_id = ANY(%s)",
            (patient_ids,),
        )
        return {(r[0], r[1]): r[2] for r in await cur.fetchall()}


async def apply(conn: psycopg.AsyncConnection[Any], actions: list[Action]) -> list[int]:
    """Carry out the engine's actions, each with its event row; returns the alert ids touched.

    Every statement is conditional on the alert's current state, so two processors acting on
    the same patient cannot open an alert twice or resolve one that is not open.
    """
    touched = []
    async with conn.cursor(row_factory=tuple_row) as cur:
        for action in actions:
            params = {**action.__dict__, "severity": action.severity.value}
            await cur.execute(_SQL[action.act], params)
            row = await cur.fetchone()
            if row is None:
                continue
            touched.append(row[0])
            note = {Act.OPEN: "opened", Act.ESCALATE: "escalated to urgent"}.get(action.act, action.message)
            await cur.execute(
                "INSERT INTO alert_events (alert_id, status, severity, actor, note)"
                " VALUES (%s, %s, %s, %s, %s)",
                (row[0], _EVENT[action.act], action.severity.value, ACTOR, note),
            )
    return touched


async def patient_rules(conn: psycopg.AsyncConnection[Any], patient_ids: list[UUID]) -> dict[UUID, RuleSet]:
    """Rule sets of the patients, among these, whose thresholds differ from the defaults."""
    if not patient_ids:
        return {}
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(
            """SELECT DISTINCT ON (patient_id) patient_id, settings FROM patient_thresholds
               WHERE patient_id = ANY(%s) ORDER BY patient_id, version DESC""",
            (patient_ids,),
        )
        return {r[0]: rules_for(Thresholds.model_validate(r[1])) for r in await cur.fetchall()}


async def silences(conn: psycopg.AsyncConnection[Any]) -> list[Silence]:
    """When each active device was last heard from (or provisioned, if never)."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(
            """SELECT d.patient_id, d.id, d.expected_interval_s,
                      GREATEST(d.provisioned_at,
                               (SELECT r.received_at FROM reading_receipts r WHERE r.device_id = d.id
                                ORDER BY r.seq DESC LIMIT 1)) AS last_at
               FROM devices d WHERE d.revoked_at IS NULL"""
        )
        return [Silence(r[0], r[1], r[3], timedelta(seconds=r[2])) for r in await cur.fetchall()]


async def escalate_overdue(conn: psycopg.AsyncConnection[Any], after: timedelta) -> list[int]:
    """Urgent alerts nobody acknowledged within `after` are escalated, once."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(
            """UPDATE alerts SET escalated_at = now(), published_at = NULL
               WHERE status = 'open' AND severity = 'urgent' AND escalated_at IS NULL
                 AND opened_at < now() - %s::interval
               RETURNING id""",
            (after,),
        )
        ids = [r[0] for r in await cur.fetchall()]
    if ids:
        async with conn.cursor() as events:
            await events.executemany(
                "INSERT INTO alert_events (alert_id, status, severity, actor, note) "
                "VALUES (%s, 'escalated', 'urgent', %s, %s)",
                [(i, ACTOR, f"not acknowledged within {after}") for i in ids],
            )
    return ids


async def publish_pending(
    pool: AsyncConnectionPool,
    producer: AIOKafkaProducer,
    topic: str,
    observe: Callable[[list[dict[str, Any]]], None] | None = None,
) -> int:
    """Send unpublished alerts to Kafka, then mark them; at-least-once on the alerts topic.
    `observe` sees the rows once Kafka has them (metrics, logs)."""
    async with pool.connection() as conn:
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                """SELECT id, patient_id, rule, severity, status, message, code, value, device_id,
                          seq, triggered_at, opened_at, acknowledged_at, resolved_at, escalated_at
                   FROM alerts WHERE published_at IS NULL ORDER BY id LIMIT 1000"""
            )
            rows = await cur.fetchall()
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
        await conn.execute(
            "UPDATE alerts SET published_at = now() WHERE id = ANY(%s)", ([r["id"] for r in rows],)
        )
        await conn.commit()
    return len(rows)
