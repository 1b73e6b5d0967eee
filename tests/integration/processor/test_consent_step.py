"""The consent step's one statement (`telehealth.storage.consent.decide_pending`): every queued
observation gets exactly one decision, with the version used; only clean ones reach research,
once per eligible purpose, clamped; steps running at once never take the same observation."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from processor.consent import ConsentStage
from telehealth.settings import Settings
from telehealth.storage import consent as consent_store
from telehealth.storage.consent_cache import ConsentCache
from tests.factories import make_patient, make_user
from tests.research_support import put_consent

BOTH = [
    {"purpose": "research", "decision": "permit", "codes": ["glucose"]},
    {"purpose": "planning", "decision": "permit", "codes": ["glucose"]},
]


async def test_queued_observations_are_decided_once_and_clean_ones_reach_research(
    db: psycopg.AsyncConnection[Any], http: httpx.AsyncClient, settings: Settings
) -> None:
    assert settings.database_url
    admin = await make_user(db, "admin")
    permits, silent = await make_patient(db, "team-step"), await make_patient(db, "team-step")
    await put_consent(http, admin, permits, BOTH)
    at = datetime.now(UTC) - timedelta(hours=3)
    rows = []
    for patient, device in ((permits, "step-permits"), (silent, "step-silent")):
        for seq in range(400):
            quality = ["future"] if seq == 1 else ["implausible"] if seq == 2 else []
            value = 45.0 if seq == 2 else 5.0 + seq / 100
            rows.append((device, seq, "glucose", patient, at + timedelta(seconds=seq), value, quality))
        rows.append((device, 0, "spo2", patient, at, 97.0, []))  # another code: its own decision
    async with db.cursor() as cur:
        await cur.executemany(
            """INSERT INTO consent_pending (device_id, seq, code, patient_id, measured_at, value, quality)
               VALUES (%s, %s, %s, %s, %s, %s, %s)""",
            rows,
        )
    await db.commit()

    # Two steps at once (and the session's processor, which works off the same queue).
    async with (
        AsyncConnectionPool(settings.database_url, min_size=1, max_size=1, open=False) as one,
        AsyncConnectionPool(settings.database_url, min_size=1, max_size=1, open=False) as two,
    ):
        await asyncio.gather(ConsentStage(ConsentCache()).drain(one), ConsentStage(ConsentCache()).drain(two))

    devices = ["step-permits", "step-silent"]
    cur = await db.execute("SELECT count(*) AS n FROM consent_pending WHERE device_id = ANY(%s)", (devices,))
    assert (await cur.fetchone())["n"] == 0  # type: ignore[index]
    cur = await db.execute(
        """SELECT device_id, code, consent_version, eligible, count(*) AS n FROM reading_consent
           WHERE device_id = ANY(%s) GROUP BY 1, 2, 3, 4 ORDER BY 1, 2""",
        (devices,),
    )
    assert [tuple(r.values()) for r in await cur.fetchall()] == [
        ("step-permits", "glucose", 1, ["research", "planning"], 400),
        ("step-permits", "spo2", 1, [], 1),
        ("step-silent", "glucose", None, [], 400),
        ("step-silent", "spo2", None, [], 1),
    ]
    cur = await db.execute(
        """SELECT purpose, count(*) AS n, min(value) AS low, max(value) AS high,
                  count(*) FILTER (WHERE measured_at IN (%s, %s)) AS flagged
           FROM research_readings WHERE patient_id = ANY(%s) GROUP BY purpose ORDER BY purpose""",
        (at + timedelta(seconds=1), at + timedelta(seconds=2), [permits, silent]),
    )
    # 398 clean observations per purpose: the `future` and the `implausible` one never arrive
    assert [tuple(r.values()) for r in await cur.fetchall()] == [
        ("planning", 398, 5.0, 8.99, 0),
        ("research", 398, 5.0, 8.99, 0),
    ]


async def test_the_step_takes_its_rows_by_ctid_whatever_the_statistics(
    db: psycopg.AsyncConnection[Any],
) -> None:
    """The queue churns faster than its statistics: planned on a stale estimate, a delete joined
    to the decisions re-ran its locking subquery per queued row (5 s timeouts with 986 rows).
    Planned here on statistics that say the queue is empty, as the step plans it (in its own
    transaction), the rows are locked in one pass and deleted by their ctid."""
    await db.execute("ANALYZE consent_pending")  # whatever it holds now, soon stale
    await db.commit()
    decisions = {f"00000000-0000-0000-0000-{i:012d} glucose": [1, "research"] for i in range(3)}
    async with db.transaction(force_rollback=True):
        await db.execute(consent_store._BY_TID)
        cur = await db.execute(
            "EXPLAIN " + consent_store._DECIDE,
            {
                "decisions": Jsonb(decisions),
                "limit": 5000,
                "at": datetime.now(UTC),
                "plausible": Jsonb({"glucose": [0.5, 40.0]}),
            },
        )
        plan = "\n".join(row["QUERY PLAN"] for row in await cur.fetchall())
    # the queue is read once to lock, and the taken rows fetched by ctid: nothing per queued row
    assert plan.count("Scan on consent_pending") == 2 and "Tid Scan on consent_pending c" in plan, plan
    assert "Join" not in plan and "SubPlan" not in plan, plan
