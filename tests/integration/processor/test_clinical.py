"""Clinical cases end to end: MQTT -> gateway -> Kafka -> processor -> alerts in the database."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg

from processor.alerts.glucose import DEFAULT_LOW
from simulators.publisher import Publisher
from telehealth.storage.thresholds import save_thresholds
from telehealth.thresholds import Thresholds
from telehealth.topics import readings_topic
from tests.conftest import eventually
from tests.factories import alerts_of, auth, make_device, make_patient, make_user, reading


async def test_a_partly_late_fall_from_a_cgm_without_source_is_forecast_by_its_live_reading(
    db: psycopg.AsyncConnection[Any], device_publisher: Publisher
) -> None:
    """The earlier readings of the window arrive late (a backlog) and the payload names no
    `source`: the device kind makes it CGM data, the late readings make the trend, and the
    live reading opens the predicted low."""
    patient = await make_patient(db, "team-clinical")
    cgm = await make_device(db, patient, "cgm")
    now = datetime.now(UTC)
    values = [(25, 6.4), (20, 5.95), (15, 5.5), (12, 5.25), (4, 4.6), (0, 4.3)]
    backlog = [
        reading(
            cgm.device_id,
            seq,
            now - timedelta(minutes=ago),
            [{"code": "glucose", "value": v, "unit": "mmol/L"}],
        )
        for seq, (ago, v) in enumerate(values, start=1)
    ]
    device_publisher.publish_raw(readings_topic(cgm.device_id), json.dumps(backlog).encode())
    assert await device_publisher.drain()

    async def opened() -> list[dict[str, Any]] | None:
        found = await alerts_of(db, patient)
        return found or None

    [alert] = await eventually(opened)
    assert (alert["rule"], alert["code"]) == ("glucose_low", "glucose_forecast")
    assert alert["seq"] in (5, 6), "opened by a live reading"
    assert 2.2 <= alert["value"] < 3.9
    # the message names the line and the horizon that fired, and the severity follows the line
    match = re.search(r"forecast [0-9.]+ mmol/L within (\d+) min, below ([0-9.]+)", alert["message"])
    assert match, alert["message"]
    line = float(match[2])
    assert line in (DEFAULT_LOW.urgent_low, DEFAULT_LOW.predicted_low)
    assert alert["severity"] == ("urgent" if line == DEFAULT_LOW.urgent_low else "warning")
    expected = DEFAULT_LOW.urgent_horizon_min if alert["severity"] == "urgent" else DEFAULT_LOW.horizon_min
    assert int(match[1]) == expected
    cur = await db.execute(
        "SELECT seq, source, quality FROM readings WHERE device_id = %s ORDER BY seq", (cgm.device_id,)
    )
    rows = await cur.fetchall()
    assert [r["source"] for r in rows] == ["cgm"] * 6
    assert [r["quality"] for r in rows] == [["late"]] * 4 + [[]] * 2


async def test_hovering_just_under_the_line_is_flagged_once(
    db: psycopg.AsyncConnection[Any], device_publisher: Publisher
) -> None:
    """3.8 / 4.0 / 3.8 / 4.0 ... from a meter: a finger-prick below the line is deliberate, so
    the first one alerts at once, and the hovering that follows stays one alert."""
    patient = await make_patient(db, "team-clinical")
    await save_thresholds(db, patient, Thresholds(glucose_low_minutes=2), "test")
    meter = await make_device(db, patient, "glucometer")
    start = datetime.now(UTC) - timedelta(minutes=4)
    for seq, value in enumerate([3.8, 4.0, 3.8, 4.0, 3.8, 4.0, 3.8, 4.0, 3.8], start=1):
        device_publisher.publish_reading(
            meter.device_id,
            seq,
            [{"code": "glucose", "value": value, "unit": "mmol/L"}],
            measured_at=start + timedelta(seconds=30 * (seq - 1)),
        )
    assert await device_publisher.drain()

    async def settled() -> list[dict[str, Any]] | None:
        cur = await db.execute("SELECT count(*) AS n FROM readings WHERE device_id = %s", (meter.device_id,))
        row = await cur.fetchone()
        return await alerts_of(db, patient) if row and row["n"] == 9 else None

    found = await eventually(settled)
    assert [(a["rule"], a["severity"], a["status"], a["seq"]) for a in found] == [
        ("glucose_low", "warning", "open", 1)
    ], found


async def test_motion_artefacts_are_stored_flagged_and_a_credible_low_alarms_at_once(
    db: psycopg.AsyncConnection[Any], device_publisher: Publisher
) -> None:
    patient = await make_patient(db, "team-clinical")
    oxi = await make_device(db, patient, "oximeter")
    start = datetime.now(UTC) - timedelta(minutes=7)

    def spo2(value: float) -> list[dict[str, Any]]:
        return [{"code": "spo2", "value": value, "unit": "%"}, {"code": "pulse", "value": 80, "unit": "/min"}]

    sent = [
        (97, {}),
        (84, {}),  # an impossible drop that recovers at once
        (97, {}),
        (80, {"perfusion_index": 0.1}),  # the probe reports a weak signal
        (96, {"perfusion_index": 2.5}),
        (93, {}),
        (91, {}),  # a credible low: urgent on this reading
    ]
    for seq, (value, context) in enumerate(sent, start=1):
        body = reading(oxi.device_id, seq, start + timedelta(minutes=seq - 1), spo2(value), context=context)
        device_publisher.publish_raw(readings_topic(oxi.device_id), json.dumps(body).encode())
    assert await device_publisher.drain()

    async def settled() -> list[dict[str, Any]] | None:
        cur = await db.execute(
            "SELECT count(*) AS n FROM reading_receipts WHERE device_id = %s", (oxi.device_id,)
        )
        row = await cur.fetchone()
        found = await alerts_of(db, patient)
        return found if row and row["n"] == 7 and found else None

    found = await eventually(settled)
    assert [(a["rule"], a["severity"], a["value"]) for a in found] == [("spo2_low", "urgent", 91)]
    cur = await db.execute(
        "SELECT seq FROM readings WHERE device_id = %s AND 'artefact' = ANY(quality) AND code = 'spo2'"
        " ORDER BY seq",
        (oxi.device_id,),
    )
    assert [r["seq"] for r in await cur.fetchall()] == [2, 4]


async def test_a_repeated_severe_low_renotifies_and_a_new_episode_is_a_new_alert(
    db: psycopg.AsyncConnection[Any], http: httpx.AsyncClient, device_publisher: Publisher
) -> None:
    """Acknowledged urgent low; back above 3.0, then below again: the same alert is back in the
    inbox. Then the episode ends (set to 1 minute back above 3.9 for this patient, so the test
    runs in real time) and a new severe low is a new alert."""
    patient = await make_patient(db, "team-clinical-ack")
    await save_thresholds(db, patient, Thresholds(glucose_episode_end_minutes=1), "test")
    meter = await make_device(db, patient, "glucometer")
    clinician = await make_user(db, "clinician", ["team-clinical-ack"])
    t0 = datetime.now(UTC) - timedelta(minutes=5)

    def send(seq: int, after_s: int, value: float) -> None:
        device_publisher.publish_reading(
            meter.device_id,
            seq,
            [{"code": "glucose", "value": value, "unit": "mmol/L"}],
            measured_at=t0 + timedelta(seconds=after_s),
        )

    send(1, 0, 2.8)

    async def opened() -> list[dict[str, Any]] | None:
        cur = await db.execute("SELECT id FROM alerts WHERE patient_id = %s", (patient,))
        return await cur.fetchall() or None

    [first] = await eventually(opened)
    ack = await http.post(
        f"/api/v1/alerts/{first['id']}/acknowledge", json={"note": "calling"}, headers=auth(clinician)
    )
    assert ack.status_code == 200, ack.text
    for seq, (after_s, value) in enumerate([(20, 3.4), (40, 3.4), (80, 3.4), (100, 2.9)], start=2):
        send(seq, after_s, value)
    assert await device_publisher.drain()

    async def renotified() -> dict[str, Any] | None:
        cur = await db.execute(
            "SELECT status, value, acknowledged_at FROM alerts WHERE id = %s AND value = 2.9", (first["id"],)
        )
        return await cur.fetchone()

    assert await eventually(renotified) == {"status": "open", "value": 2.9, "acknowledged_at": None}
    for seq, (after_s, value) in enumerate([(120, 4.5), (150, 4.5), (185, 4.6), (200, 2.7)], start=6):
        send(seq, after_s, value)
    assert await device_publisher.drain()

    async def both() -> list[dict[str, Any]] | None:
        found = await alerts_of(db, patient)
        return found if len(found) == 2 else None

    found = await eventually(both)
    assert [(a["status"], a["severity"], a["value"]) for a in found] == [
        ("resolved", "urgent", 2.9),  # the value that raised it last
        ("open", "urgent", 2.7),
    ]
    cur = await db.execute(
        "SELECT status, note FROM alert_events WHERE alert_id = %s ORDER BY id", (first["id"],)
    )
    events = await cur.fetchall()
    assert [e["status"] for e in events] == ["open", "acknowledged", "open", "resolved"], events
    assert "again" in events[2]["note"] and events[3]["note"].startswith("Episode over"), events
