"""Simulated fleets through the running pipeline, reconciled against what was stored."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg

from simulators.cohort import ensure_cohort
from simulators.report import reconcile_settled
from simulators.run import simulate
from telehealth.broker.admin import device_logins
from telehealth.mqtt import MqttAddress, parse_mqtt_url
from telehealth.settings import Settings
from telehealth.stack import Services
from tests.integration.test_cli import telehealth


def device_address(settings: Settings) -> MqttAddress:
    """Where devices connect: the TLS listener, verified against the broker's CA, when there is one."""
    url = settings.mqtt_device_url or settings.mqtt_url
    assert url
    return parse_mqtt_url(url, str(settings.mqtt_ca_file) if settings.mqtt_ca_file else None)


async def test_faulty_devices_on_their_own_connections_reconcile_exactly(
    settings: Settings, services: Services, db: psycopg.AsyncConnection[Any]
) -> None:
    assert settings.database_url and settings.mqtt_url
    async with device_logins(settings) as logins:
        cohort = await ensure_cohort(
            settings.database_url, 12, logins=logins, scenario="faulty", care_team="fleet-test"
        )
    report = await simulate(cohort, device_address(settings), scenario="faulty", speed=120, duration_s=18)

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


async def test_a_hub_drives_many_devices_at_a_set_rate(settings: Settings, services: Services) -> None:
    assert settings.database_url and settings.mqtt_url
    async with device_logins(settings) as logins:
        cohort = await ensure_cohort(
            settings.database_url, 100, logins=logins, scenario="normal", care_team="fleet-test"
        )
    report = await simulate(
        cohort,
        parse_mqtt_url(settings.mqtt_relay_url()),
        scenario="normal",
        rate=400,
        connections=2,
        duration_s=5,
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
