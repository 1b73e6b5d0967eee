"""The dashboard API over HTTP against a running server and the real database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import httpx
import psycopg
import pytest

from simulators.cohort import nhs_number_for
from tests.factories import auth, make_device, make_patient, make_user

PROBLEM = "application/problem+json"


async def test_health_and_readiness(http: httpx.AsyncClient) -> None:
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    ready = await http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {
        "database": "ok",
        "kafka": "ok",
        "mqtt": "ok",
        "gateway": "ok",
        "processor": "ok",
    }
    metrics = await http.get("/metrics")
    assert "telehealth_api_requests_total{" in metrics.text  # an application counter, not just the runtime


async def test_admin_registers_patient_and_provisions_device(
    db: psycopg.AsyncConnection[Any], http: httpx.AsyncClient
) -> None:
    admin = await make_user(db, "admin")
    body = {
        "nhs_number": nhs_number_for(90_001),
        "name": "Ada Example",
        "birth_date": "1961-04-02",
        "sex": "female",
        "conditions": ["copd"],
        "care_team": "team-api",
    }
    created = await http.post("/api/v1/patients", json=body, headers=auth(admin))
    assert created.status_code == 201, created.text
    patient_id = created.json()["id"]
    again = await http.post("/api/v1/patients", json=body, headers=auth(admin))
    assert again.status_code == 409 and again.headers["content-type"] == PROBLEM, again.text

    device = {"device_id": f"oxi-api-{uuid4().hex[:6]}", "patient_id": patient_id, "kind": "oximeter"}
    creds = await http.post("/api/v1/devices", json=device, headers=auth(admin))
    assert creds.status_code == 201, creds.text
    assert creds.json()["mqtt_username"] == device["device_id"] and len(creds.json()["mqtt_password"]) >= 24
    assert creds.json()["readings_topic"] == f"telehealth/v1/devices/{device['device_id']}/readings"
    cur = await db.execute("SELECT secret_hash FROM devices WHERE id = %s", (device["device_id"],))
    row = await cur.fetchone()
    assert row is not None, "provisioned device missing from the database"
    assert creds.json()["mqtt_password"] not in row["secret_hash"]
    dup = await http.post("/api/v1/devices", json=device, headers=auth(admin))
    assert dup.status_code == 409, dup.text


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"nhs_number": "9434765918"}, "nhs_number"),
        ({"birth_date": "2999-01-01"}, "birth_date"),
        ({"sex": "x"}, "sex"),
        ({"name": ""}, "name"),
    ],
)
async def test_invalid_registration_is_a_clear_problem(
    db: psycopg.AsyncConnection[Any], http: httpx.AsyncClient, change: dict[str, str], field: str
) -> None:
    admin = await make_user(db, "admin")
    body = {
        "nhs_number": nhs_number_for(90_002),
        "name": "B",
        "birth_date": "1961-04-02",
        "sex": "male",
        "care_team": "t",
    } | change
    response = await http.post("/api/v1/patients", json=body, headers=auth(admin))
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    assert field in response.json()["detail"]


async def test_roles_and_care_teams_are_enforced(
    db: psycopg.AsyncConnection[Any], http: httpx.AsyncClient
) -> None:
    mine = await make_patient(db, "team-a")
    theirs = await make_patient(db, "team-b")
    clinician = await make_user(db, "clinician", ["team-a"])
    researcher = await make_user(db, "researcher")
    patient_user = await make_user(db, "patient", patient_id=mine)

    assert (await http.get("/api/v1/patients")).status_code == 401
    bad = await http.get("/api/v1/patients", headers=auth("not-a-token"))
    assert bad.status_code == 401 and bad.headers["content-type"] == PROBLEM

    listed = await http.get("/api/v1/patients", headers=auth(clinician))
    ids = {p["id"] for p in listed.json()}
    assert str(mine) in ids and str(theirs) not in ids

    own = f"/api/v1/patients/{mine}/observations"
    other = f"/api/v1/patients/{theirs}/observations"
    assert (await http.get(own, headers=auth(clinician))).status_code == 200
    # Outside the care team is answered like a patient that does not exist: no existence leak.
    assert (await http.get(other, headers=auth(clinician))).status_code == 404
    assert (await http.get(own, headers=auth(patient_user))).status_code == 200
    assert (await http.get(other, headers=auth(patient_user))).status_code == 404
    for path in (own, "/api/v1/patients", "/api/v1/alerts"):
        denied = await http.get(path, headers=auth(researcher))
        assert denied.status_code == 403 and denied.json()["detail"]
    assert (await http.post("/api/v1/patients", json={}, headers=auth(clinician))).status_code == 403
    assert (
        await http.get(f"/api/v1/patients/{uuid4()}/observations", headers=auth(clinician))
    ).status_code == 404


async def test_observations_raw_and_bucketed(
    db: psycopg.AsyncConnection[Any], http: httpx.AsyncClient
) -> None:
    patient = await make_patient(db, "team-obs")
    device = await make_device(db, patient, "cgm")
    clinician = await make_user(db, "clinician", ["team-obs"])
    base = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    rows = [(i, base + timedelta(minutes=5 * i), 5.0 + i) for i in range(24)]  # two hours
    async with db.cursor() as cur:
        for seq, at, value in rows:
            await cur.execute(
                """INSERT INTO readings (patient_id, measured_at, code, value, unit, loinc, device_id,
                                         seq, received_at, quality)
                   VALUES (%s, %s, 'glucose', %s, 'mmol/L', '105272-9', %s, %s, %s, %s)""",
                (patient, at, value, device.device_id, seq, at, ["implausible"] if seq == 23 else []),
            )
    params = {"from": "2026-11-20T10:00:00Z", "to": "2026-11-20T12:00:00Z", "code": "glucose"}
    url = f"/api/v1/patients/{patient}/observations"
    raw = (await http.get(url, params=params, headers=auth(clinician))).json()
    assert len(raw) == 24 and raw[-1]["quality"] == ["implausible"]
    hourly = (await http.get(url, params=params | {"bucket": "1h"}, headers=auth(clinician))).json()
    assert [(b["count"], b["min"], b["max"]) for b in hourly] == [(12, 5.0, 16.0), (11, 17.0, 27.0)]
    assert hourly[0]["mean"] == pytest.approx(10.5) and hourly[0]["bucket"].startswith("2026-11-20T10:00")
    for bad in ({"bucket": "7 fortnights"}, {"code": "weight"}, {"from": "2026-11-21T00:00:00Z"}):
        assert (await http.get(url, params=params | bad, headers=auth(clinician))).status_code == 422


async def test_alert_lifecycle_through_the_api(
    db: psycopg.AsyncConnection[Any], http: httpx.AsyncClient
) -> None:
    patient = await make_patient(db, "team-life")
    clinician = await make_user(db, "clinician", ["team-life"])
    outsider = await make_user(db, "clinician", ["team-elsewhere"])
    cur = await db.execute(
        """INSERT INTO alerts (patient_id, rule, severity, message, triggered_at)
           VALUES (%s, 'spo2_low', 'urgent', 'SpO2 urgent low: 88 %%', now()) RETURNING id""",
        (patient,),
    )
    row = await cur.fetchone()
    assert row is not None
    alert_id = row["id"]
    assert (
        await http.post(f"/api/v1/alerts/{alert_id}/acknowledge", json={}, headers=auth(outsider))
    ).status_code == 404
    ack = await http.post(
        f"/api/v1/alerts/{alert_id}/acknowledge", json={"note": "calling"}, headers=auth(clinician)
    )
    assert ack.status_code == 200 and ack.json()["status"] == "acknowledged"
    assert (
        await http.post(f"/api/v1/alerts/{alert_id}/acknowledge", json={}, headers=auth(clinician))
    ).status_code == 409
    assert (
        await http.post(f"/api/v1/alerts/{alert_id}/resolve", json={"note": ""}, headers=auth(clinician))
    ).status_code == 422
    done = await http.post(
        f"/api/v1/alerts/{alert_id}/resolve", json={"note": "O2 adjusted"}, headers=auth(clinician)
    )
    assert done.json()["status"] == "resolved" and done.json()["resolved_by"].startswith("clinician")
    cur = await db.execute(
        "SELECT status, note FROM alert_events WHERE alert_id = %s ORDER BY id", (alert_id,)
    )
    assert [(r["status"], r["note"]) for r in await cur.fetchall()] == [
        ("acknowledged", "calling"),
        ("resolved", "O2 adjusted"),
    ]


async def test_password_login(db: psycopg.AsyncConnection[Any], http: httpx.AsyncClient) -> None:
    from telehealth.storage.people import add_user

    await add_user(db, "login-test", "clinician", password="s3cret-pass", care_teams=["t"])
    wrong = await http.post("/api/v1/auth/token", json={"username": "login-test", "password": "nope"})
    assert wrong.status_code == 401
    ok = await http.post("/api/v1/auth/token", json={"username": "login-test", "password": "s3cret-pass"})
    token = ok.json()["access_token"]
    me = await http.get("/api/v1/auth/me", headers=auth(token))
    assert me.json() == {
        "username": "login-test",
        "role": "clinician",
        "care_teams": ["t"],
        "patient_id": None,
        "glucose_unit": "mmol/L",  # the deployment's default until the user chooses
        "glucose_unit_chosen": False,
    }


async def test_dashboard_page_is_served_without_external_assets(http: httpx.AsyncClient) -> None:
    page = await http.get("/")
    assert page.status_code == 200 and "Alert inbox" in page.text
    assert "http://" not in page.text and "https://" not in page.text
    script = await http.get("/static/app.js")
    assert script.status_code == 200 and "/api/v1/alerts" in script.text


async def test_thresholds_are_versioned_validated_and_used_by_the_processor(
    db: psycopg.AsyncConnection[Any], http: httpx.AsyncClient, settings: Any
) -> None:
    from simulators.publisher import Publisher
    from tests.conftest import eventually

    patient = await make_patient(db, "team-thr")
    device = await make_device(db, patient, "oximeter")
    clinician = await make_user(db, "clinician", ["team-thr"])
    outsider = await make_user(db, "clinician", ["team-other"])
    url = f"/api/v1/patients/{patient}/thresholds"

    initial = (await http.get(url, headers=auth(clinician))).json()
    assert initial["current"]["version"] == 0 and initial["current"]["thresholds"]["spo2_scale"] == 1
    refused = await http.put(url, json={"glucose_low": 2.0}, headers=auth(clinician))
    assert refused.status_code == 422 and "glucose_urgent_low < glucose_low" in refused.json()["detail"]
    assert (await http.put(url, json={"spo2_scale": 2}, headers=auth(outsider))).status_code == 404
    saved = await http.put(url, json={"spo2_scale": 2}, headers=auth(clinician))
    assert saved.status_code == 200 and saved.json()["version"] == 1
    await http.put(url, json={"spo2_scale": 2, "warning_after": 1}, headers=auth(clinician))
    history = (await http.get(url, headers=auth(clinician))).json()
    assert [v["version"] for v in history["history"]] == [2, 1]
    assert history["current"]["changed_by"].startswith("clinician")

    assert settings.mqtt_url
    publisher = Publisher(settings.mqtt_relay_url(), client_id="thr-device")
    await publisher.connect()
    now = datetime.now(UTC)
    for seq, spo2 in enumerate([90, 89, 87], start=1):  # fine on scale 2 until 87
        publisher.publish_reading(
            device.device_id,
            seq,
            [{"code": "spo2", "value": spo2, "unit": "%"}],
            measured_at=now - timedelta(seconds=30 - seq),
        )
    await publisher.close()

    async def alerts() -> list[dict[str, Any]]:
        cur = await db.execute("SELECT severity, value FROM alerts WHERE patient_id = %s", (patient,))
        return await cur.fetchall()

    assert await eventually(alerts) == [{"severity": "warning", "value": 87}]
