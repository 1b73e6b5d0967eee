"""Opening alerts in the database (one open per patient and rule) and publishing them.

Alerts are written in the batch's transaction and published afterwards from an outbox
(`published_at IS NULL`), so a crash between the two re-publishes rather than loses.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
from aiokafka import AIOKafkaProducer
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from processor.alerts.rules import Breach

ACTOR = "processor"

_OPEN = """
INSERT INTO alerts (patient_id, rule, severity, message, code, value, device_id, seq, triggered_at)
VALUES (%(patient_id)s, %(rule)s, %(severity)s, %(message)s, %(code)s, %(value)s,
        %(device_id)s, %(seq)s, %(measured_at)s)
ON CONFLICT (patient_id, rule) WHERE status <> 'resolved' DO UPDATE
    SET severity = EXCLUDED.severity, message = EXCLUDED.message, value = EXCLUDED.value,
        device_id = EXCLUDED.device_id, seq = EXCLUDED.seq, triggered_at = EXCLUDED.triggered_at,
        published_at = NULL
    WHERE alerts.severity = 'warning' AND EXCLUDED.severity = 'urgent'
RETURNING id, (xmax = 0) AS opened, severity
"""


async def open_alerts(conn: psycopg.AsyncConnection[Any], found: list[Breach]) -> list[int]:
    """Open new alerts or escalate open warnings to urgent; returns the ids touched."""
    touched = []
    async with conn.cursor(row_factory=dict_row) as cur:
        for breach in found:
            params = {**breach.__dict__, "severity": breach.severity.value}
            await cur.execute(_OPEN, params)
            row = await cur.fetchone()
            if row is None:
                continue
            touched.append(row["id"])
            await cur.execute(
                "INSERT INTO alert_events (alert_id, status, severity, actor, note) "
                "VALUES (%s, 'open', %s, %s, %s)",
                (row["id"], row["severity"], ACTOR, "opened" if row["opened"] else "escalated"),
            )
    return touched


async def publish_pending(pool: AsyncConnectionPool, producer: AIOKafkaProducer, topic: str) -> int:
    """Send unpublished alerts to Kafka, then mark them; at-least-once on the alerts topic."""
    async with pool.connection() as conn:
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                """SELECT id, patient_id, rule, severity, status, message, code, value, device_id,
                          seq, triggered_at, opened_at
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
        await conn.execute(
            "UPDATE alerts SET published_at = now() WHERE id = ANY(%s)", ([r["id"] for r in rows],)
        )
        await conn.commit()
    return len(rows)
