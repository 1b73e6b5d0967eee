"""Simulated fleets through the running pipeline, reconciled against what was stored."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from launcher.stack import Services
from simulators.cohort import ensure_cohort
from simulators.report import reconcile_settled
from simulators.run import simulate
from simulators.scenario import load
from telehealth.broker.admin import device_logins
from telehealth.mqtt import MqttAddress, parse_mqtt_url
from telehealth.settings import Settings
from telehealth.storage.devices import DeviceBelongsToAnother, reissue_secret
from tests.commands import telehealth
from tests.conftest import eventually


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
    await eventually(device_alerts, timeout=20)
    assert seen["alerts"] == wanted, seen
    cur = await db.execute(
        "SELECT count(*) FROM patient_thresholds WHERE patient_id = %s AND settings->>'spo2_scale' = '2'",
        (cohort[1].patient_id,),
    )
    assert (await cur.fetchone()) == {"count": 1}, "the COPD patient is scored on SpO2 scale 2"


#: raised from device status or silence, not from readings
DEVICE_RULES = ["device_offline", "battery_low", "stale_data"]


async def test_the_hypo_scenario_raises_its_alerts_live(
    settings: Settings, services: Services, db: psycopg.AsyncConnection[Any]
) -> None:
    """The headline demo: patient 0's overdose is one glucose_low episode that reaches urgent;
    the quiet control and both oximeters (motion artefacts on) raise nothing. Numbered from an
    offset, so the cohort has devices of its own beside the other tests' cohorts."""
    assert settings.database_url
    scenario = load("hypo")
    async with device_logins(settings) as logins:
        cohort = await ensure_cohort(
            settings.database_url, 2, logins=logins, scenario=scenario, care_team="fleet-test", first=200
        )
    assert {d.device_id for p in cohort for d in p.devices.values()} == {
        "cgm-00200",
        "oximeter-00200",
        "cgm-00201",
        "oximeter-00201",
    }
    await simulate(cohort, device_address(settings), scenario="hypo", speed=150, duration_s=28)

    expected = {(cohort[e.patient].patient_id, e.rule, e.severity) for e in scenario.expected_alerts}
    assert expected == {(cohort[0].patient_id, "glucose_low", "urgent")}
    seen: dict[str, Any] = {}

    async def raised() -> bool:
        cur = await db.execute(
            "SELECT patient_id, rule, severity FROM alerts WHERE patient_id = ANY(%s) AND rule <> ALL(%s)",
            ([p.patient_id for p in cohort], DEVICE_RULES),
        )
        seen["alerts"] = {(r["patient_id"], r["rule"], r["severity"]) for r in await cur.fetchall()}
        return bool(seen["alerts"] == expected)

    await eventually(raised)
    cur = await db.execute(
        "SELECT count(*) AS n FROM readings WHERE device_id = 'oximeter-00200' AND 'artefact' = ANY(quality)"
    )
    row = await cur.fetchone()
    assert row is not None and row["n"] > 0, "the scenario's motion artefacts arrived, flagged"


async def test_a_cohort_never_rebinds_another_patients_device(
    settings: Settings, services: Services, db: psycopg.AsyncConnection[Any]
) -> None:
    assert settings.database_url
    async with device_logins(settings) as logins:
        first = await ensure_cohort(
            settings.database_url, 1, logins=logins, care_team="fleet-test", first=300
        )
        second = await ensure_cohort(
            settings.database_url, 1, logins=logins, care_team="fleet-test", first=301
        )
        again = await ensure_cohort(
            settings.database_url, 1, logins=logins, care_team="fleet-test", first=300
        )
    assert first[0].devices["cgm"].device_id == "cgm-00300" == again[0].devices["cgm"].device_id
    assert second[0].devices["cgm"].device_id == "cgm-00301"
    assert first[0].patient_id == again[0].patient_id != second[0].patient_id
    with pytest.raises(DeviceBelongsToAnother):
        await reissue_secret(db, "cgm-00300", patient_id=second[0].patient_id)
    cur = await db.execute("SELECT patient_id FROM devices WHERE id = 'cgm-00300'")
    assert await cur.fetchone() == {"patient_id": first[0].patient_id}


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
