"""The patient at a glance (`GET /api/v1/patients/{id}/now`), the patient's time zone, the
user's glucose unit, one patient's record and the access log's words for these reads."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from simulators.publisher import Publisher
from telehealth.storage import trends
from telehealth.thresholds import Thresholds
from tests.conftest import eventually
from tests.factories import auth, make_device, make_patient, make_user

_INSERT = """INSERT INTO readings (patient_id, measured_at, code, value, unit, loinc, source, device_id,
                                   seq, received_at, quality)
             VALUES (%s, %s, %s, %s, %s, '-', %s, %s, %s, %s, %s)"""

#: the default predicted-low horizon, the forecast's length
HORIZON = Thresholds().glucose_predicted_minutes


def expected_projection(level: float, rate: float, minutes: int) -> float:
    """The forecast as docs/alerts.md defines it: the rate held relative to the level, clamped
    to what a CGM reports (2.2-22.2 mmol/L)."""
    return min(max(level * math.exp(rate / level * minutes), 2.2), 22.2)


async def test_the_patient_at_a_glance(db: psycopg.AsyncConnection[Any], http: httpx.AsyncClient) -> None:
    patient = await make_patient(db, "team-now")
    cgm = await make_device(db, patient, "cgm")
    oxi = await make_device(db, patient, "oximeter")
    clinician = await make_user(db, "clinician", ["team-now"])
    own = await make_user(db, "patient", patient_id=patient)
    outsider = await make_user(db, "clinician", ["team-not-now"])
    researcher = await make_user(db, "researcher")
    url = f"/api/v1/patients/{patient}/now"

    empty = (await http.get(url, headers=auth(clinician))).json()
    assert empty["glucose"] is None and empty["spo2"] is None and empty["forecast"] is None
    assert empty["time_zone"] == "Europe/London"  # the deployment's default

    now = datetime.now(UTC)
    latest = now - timedelta(minutes=2)
    # 7.0, 6.5, 6.0, 5.5 mmol/L five minutes apart: -0.1 mmol/L/min, 1.8 mg/dL/min: falling slowly
    rows = [
        (
            patient,
            latest - timedelta(minutes=5 * k),
            "glucose",
            5.5 + 0.5 * k,
            "mmol/L",
            "cgm",
            cgm.device_id,
            10 - k,
            now,
            [],
        )
        for k in range(4)
    ]
    rows += [
        (patient, now - timedelta(minutes=3), "spo2", 96.0, "%", None, oxi.device_id, 1, now, []),
        (patient, now - timedelta(minutes=1), "spo2", 72.0, "%", None, oxi.device_id, 2, now, ["artefact"]),
    ]
    async with db.cursor() as cur:
        await cur.executemany(_INSERT, rows)

    body = (await http.get(url, headers=auth(clinician))).json()
    glucose = body["glucose"]
    assert glucose["value"] == 5.5 and glucose["seq"] == 10 and glucose["credible"] is None
    trend = body["glucose_trend"]
    assert trend["delta"] == pytest.approx(-0.5) and trend["delta_minutes"] == pytest.approx(5)
    assert trend["rate_source"] == "slope" and trend["rate_per_min"] == pytest.approx(-0.1)
    assert trend["trend"] == "falling_slowly"
    assert body["forecast"] is None  # no trend stored by the processor for this reading
    # The newest SpO2 is an artefact: shown as such, with the newest credible value beside it.
    assert body["spo2"]["value"] == 72 and body["spo2"]["quality"] == ["artefact"]
    assert body["spo2"]["credible"]["value"] == 96
    assert body["pulse"] is None

    # With the processor's filtered level and rate stored for the newest reading, they lead:
    # -0.2 mmol/L/min is 3.6 mg/dL/min, falling quickly, and the forecast runs to the horizon.
    level, rate = 5.45, -0.2
    await trends.store(db, [trends.Trend(cgm.device_id, 10, patient, latest, level, rate)])
    body = (await http.get(url, headers=auth(own))).json()
    assert body["glucose_trend"]["rate_source"] == "filter"
    assert body["glucose_trend"]["trend"] == "falling_quickly"
    forecast = body["forecast"]
    assert (
        forecast["horizon_min"] == HORIZON and forecast["level"] == level and forecast["rate_per_min"] == rate
    )
    assert datetime.fromisoformat(forecast["from"]) == latest
    assert [p["minutes"] for p in forecast["points"]] == list(range(0, HORIZON + 1, 5))
    for p in forecast["points"]:
        assert p["value"] == pytest.approx(expected_projection(level, rate, p["minutes"]), abs=1e-3)
        assert datetime.fromisoformat(p["at"]) == latest + timedelta(minutes=p["minutes"])
    assert forecast["predicted_low_line"] == Thresholds().predicted_low_line

    # The patient's own horizon.
    saved = await http.put(
        f"/api/v1/patients/{patient}/thresholds",
        json={"glucose_predicted_minutes": 40},
        headers=auth(clinician),
    )
    assert saved.status_code == 200, saved.text
    body = (await http.get(url, headers=auth(clinician))).json()
    assert body["forecast"]["horizon_min"] == 40 and body["forecast"]["points"][-1]["minutes"] == 40

    assert (await http.get(url, headers=auth(outsider))).status_code == 404
    assert (await http.get(url, headers=auth(researcher))).status_code == 403


async def test_time_zone_preferences_and_the_record(
    db: psycopg.AsyncConnection[Any], http: httpx.AsyncClient
) -> None:
    patient = await make_patient(db, "team-zone")
    clinician = await make_user(db, "clinician", ["team-zone"])
    own = await make_user(db, "patient", patient_id=patient)
    other = await make_user(db, "patient", patient_id=await make_patient(db, "team-zone"))

    zone_url = f"/api/v1/patients/{patient}/time-zone"
    for bad in ("Mars/Olympus", "../etc/passwd", "", "x" * 65):
        refused = await http.put(zone_url, json={"time_zone": bad}, headers=auth(clinician))
        assert refused.status_code == 422, (bad, refused.text)
        assert "time_zone" in refused.text
    assert (
        await http.put(zone_url, json={"time_zone": "Asia/Tokyo"}, headers=auth(other))
    ).status_code == 404
    assert (await http.put(zone_url, json={"time_zone": "Asia/Tokyo"}, headers=auth(own))).status_code == 200
    record = (await http.get(f"/api/v1/patients/{patient}", headers=auth(clinician))).json()
    assert record["time_zone"] == "Asia/Tokyo"
    summary = (await http.get(f"/api/v1/patients/{patient}/glucose-summary", headers=auth(clinician))).json()
    assert summary["timezone"] == "Asia/Tokyo"
    assert (await http.put(zone_url, json={"time_zone": None}, headers=auth(clinician))).status_code == 200
    summary = (await http.get(f"/api/v1/patients/{patient}/glucose-summary", headers=auth(clinician))).json()
    assert summary["timezone"] == "Europe/London"
    assert (await http.get(f"/api/v1/patients/{patient}", headers=auth(other))).status_code == 404

    me = (await http.get("/api/v1/auth/me", headers=auth(clinician))).json()
    assert me["glucose_unit"] == "mmol/L" and me["glucose_unit_chosen"] is False
    chosen = await http.put(
        "/api/v1/auth/me/preferences", json={"glucose_unit": "mg/dL"}, headers=auth(clinician)
    )
    assert chosen.status_code == 200 and chosen.json()["glucose_unit"] == "mg/dL"
    assert (await http.get("/api/v1/auth/me", headers=auth(clinician))).json()["glucose_unit"] == "mg/dL"
    assert (
        await http.put("/api/v1/auth/me/preferences", json={"glucose_unit": "mg"}, headers=auth(clinician))
    ).status_code == 422

    # The patient's access log says what happened, in words.
    log = (await http.get(f"/api/v1/patients/{patient}/access-log", headers=auth(own))).json()
    described = {e["action"]: e["description"] for e in log}
    assert described["patient.time_zone.update"] == "changed your time zone"
    assert described["patient.read"].startswith("read your record")
    assert described["glucose_summary.read"].startswith("read your glucose summary")
    assert all(e["description"] and "." not in e["description"].split()[0] for e in log)


async def test_the_forecast_drawn_is_the_one_the_alarm_judged(
    db: psycopg.AsyncConnection[Any], http: httpx.AsyncClient, device_publisher: Publisher
) -> None:
    """A falling CGM trace through the real pipeline: the processor stores its filtered trend
    with the newest reading, and the patient's header forecasts from it."""
    team = "team-now-forecast"
    clinician = await make_user(db, "clinician", [team])
    patient = await make_patient(db, team)
    cgm = await make_device(db, patient, "cgm")
    start = datetime.now(UTC) - timedelta(minutes=9)
    values = [7.0, 6.8, 6.6, 6.4, 6.2, 6.0, 5.8, 5.6, 5.4, 5.2]
    for seq, value in enumerate(values, start=1):
        device_publisher.publish_reading(
            cgm.device_id,
            seq,
            [{"code": "glucose", "value": value, "unit": "mmol/L"}],
            measured_at=start + timedelta(minutes=seq - 1),
        )
    assert await device_publisher.drain()

    async def forecast() -> dict[str, Any] | None:
        body = (await http.get(f"/api/v1/patients/{patient}/now", headers=auth(clinician))).json()
        ready = body.get("glucose", {}) and body["glucose"]["seq"] == len(values) and body["forecast"]
        return body if ready else None

    body = await eventually(forecast)
    assert body["glucose_trend"]["rate_source"] == "filter"
    assert body["forecast"]["rate_per_min"] < 0, "the filter sees the fall"
    cur = await db.execute(
        "SELECT seq, level, rate_per_min FROM glucose_trends WHERE device_id = %s", (cgm.device_id,)
    )
    row = await cur.fetchone()
    assert row["seq"] == len(values) and row["rate_per_min"] == body["forecast"]["rate_per_min"]
    assert row["level"] == body["forecast"]["level"]
    cur = await db.execute("SELECT DISTINCT code FROM readings WHERE device_id = %s", (cgm.device_id,))
    assert [r["code"] for r in await cur.fetchall()] == ["glucose"], "the trend is not a reading"
