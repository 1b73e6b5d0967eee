"""Simulated fleets through the running pipeline, reconciled against what was stored."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg

from simulators.cohort import ensure_cohort
from simulators.report import reconcile_settled
from simulators.run import simulate
from simulators.scenario import load
from telehealth.settings import Settings
from telehealth.stack import Services
from tests.conftest import eventually
from tests.integration.test_cli import telehealth


async def test_faulty_devices_on_their_own_connections_reconcile_exactly(
    settings: Settings, services: Services, db: psycopg.AsyncConnection[Any]
) -> None:
    assert settings.database_url and settings.mqtt_url
    cohort = await ensure_cohort(settings.database_url, 12, scenario="faulty", care_team="fleet-test")
    report = await simulate(cohort, settings.mqtt_url, scenario="faulty", speed=120, duration_s=18)

    assert report.connections == report.devices == 24
    assert report.messages_acked == report.messages_sent and report.publish_failures == 0
    assert report.lost_on_device and report.duplicates_sent and report.backlog_uploaded
    assert set(report.dead_letters) == {"unparseable", "oversized", "device_mismatch"}
    result = await reconcile_settled(settings.database_url, report)
    assert result.exact, result.summary()

    patient = cohort[0].patient_id

    wanted = {"device_offline": "resolved", "battery_low": "open"}
    seen: dict[str, Any] = {}

    async def device_alerts() -> bool:
        cur = await db.execute(
            "SELECT rule, status FROM alerts WHERE patient_id = %s AND code IN ('device', 'battery')",
            (patient,),
        )
        seen["alerts"] = {r["rule"]: r["status"] for r in await cur.fetchall()}
        cur = await db.execute("SELECT id, state, battery_pct FROM devices WHERE patient_id = %s", (patient,))
        seen["devices"] = await cur.fetchall()
        return bool(seen["alerts"] == wanted)

    # the CGM's last will opened device_offline, its return resolved it; the oximeter's battery is low
    for _ in range(100):
        if await device_alerts():
            break
        await asyncio.sleep(0.2)
    assert seen["alerts"] == wanted, seen
    cur = await db.execute(
        "SELECT count(*) FROM patient_thresholds WHERE patient_id = %s AND settings->>'spo2_scale' = '2'",
        (cohort[1].patient_id,),
    )
    assert (await cur.fetchone()) == {"count": 1}, "the COPD patient is scored on SpO2 scale 2"


async def test_the_hypo_scenario_raises_its_value_alerts_live(
    settings: Settings, services: Services, db: psycopg.AsyncConnection[Any]
) -> None:
    """Value thresholds keep their meaning at any speed (trend labels need speed 1, see run.py)."""
    assert settings.database_url and settings.mqtt_url
    scenario = load("hypo")
    cohort = await ensure_cohort(
        settings.database_url, 2, scenario=scenario, care_team="fleet-test", first=200
    )
    await simulate(cohort, settings.mqtt_url, scenario="hypo", speed=150, duration_s=28)

    trend_rules = {"glucose_predicted_low", "glucose_falling_fast"}
    expected = {
        (cohort[e.patient].patient_id, e.rule) for e in scenario.expected_alerts if e.rule not in trend_rules
    }
    assert expected == {(cohort[0].patient_id, "glucose_low")}

    async def raised() -> set[tuple[Any, str]] | None:
        cur = await db.execute(
            "SELECT patient_id, rule FROM alerts WHERE patient_id = ANY(%s) AND rule <> ALL(%s)",
            ([p.patient_id for p in cohort], list(trend_rules)),
        )
        found = {(r["patient_id"], r["rule"]) for r in await cur.fetchall()}
        return found if found == expected else None

    await eventually(raised)


async def test_a_hub_drives_many_devices_at_a_set_rate(settings: Settings, services: Services) -> None:
    assert settings.database_url and settings.mqtt_url
    cohort = await ensure_cohort(settings.database_url, 100, scenario="normal", care_team="fleet-test")
    report = await simulate(
        cohort, settings.mqtt_url, scenario="normal", rate=400, connections=2, duration_s=5
    )

    assert report.devices == 200 and report.connections == 2
    assert 1600 <= report.measured <= 2200, "about 400 readings/s for 5 s"
    assert report.messages_acked == report.messages_sent
    result = await reconcile_settled(settings.database_url, report)
    assert result.exact and result.stored == report.measured, result.summary()


def test_simulate_command_reconciles(settings: Settings, services: Services) -> None:
    done = telehealth(
        settings,
        "simulate",
        "--scenario",
        "faulty",
        "--patients",
        "2",
        "--speed",
        "120",
        "--duration",
        "4",
        "--reconcile",
    )
    assert done.returncode == 0, done.stderr
    assert "-> exact" in done.stdout and "dead letters expected" in done.stdout
