"""Treatments as Loop, Trio, AndroidAPS (API v1) and xDrip+ upload and read them (recorded
request shapes), stored per patient, read by the care team, audited, never alerts."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg

from tests.conftest import eventually
from tests.factories import auth, client_address, make_patient, make_user
from tests.nightscout_support import provision_uploader, scalar, secret


def iso(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def loop_batch(now: datetime) -> list[dict[str, Any]]:
    """Loop's NightscoutService upload: carbs, an automatic bolus, a temp basal."""
    meal = now - timedelta(minutes=30)
    return [
        {
            "eventType": "Carb Correction",
            "created_at": iso(meal),
            "timestamp": iso(meal),
            "enteredBy": "loop://iPhone",
            "carbs": 45,
            "absorptionTime": 180,
            "foodType": "\U0001f355",
            "syncIdentifier": str(uuid.uuid4()),
        },
        {
            "eventType": "Correction Bolus",
            "created_at": iso(meal + timedelta(minutes=1)),
            "timestamp": iso(meal + timedelta(minutes=1)),
            "enteredBy": "loop://iPhone",
            "type": "normal",
            "insulin": 2.35,
            "programmed": 2.35,
            "unabsorbed": 0,
            "duration": 0,
            "automatic": True,
            "insulinType": "humalog",
            "syncIdentifier": str(uuid.uuid4()),
        },
        {
            "eventType": "Temp Basal",
            "created_at": iso(meal + timedelta(minutes=5)),
            "timestamp": iso(meal + timedelta(minutes=5)),
            "enteredBy": "loop://iPhone",
            "temp": "absolute",
            "rate": 0.8,
            "absolute": 0.8,
            "duration": 30,
            "amount": 0.4,
            "automatic": True,
            "syncIdentifier": str(uuid.uuid4()),
        },
    ]


async def test_loop_uploads_carbs_bolus_and_basal_once_and_gets_an_id_for_each(
    http: httpx.AsyncClient, db: psycopg.AsyncConnection[Any]
) -> None:
    patient = await make_patient(db, "team-tx")
    creds = await provision_uploader(http, db, patient)
    batch = loop_batch(datetime.now(UTC))
    first = await http.post("/api/v1/treatments", json=batch, headers=secret(creds))
    assert first.status_code == 200, first.text
    ids = [t["_id"] for t in first.json()]
    assert len(ids) == 3 and all(isinstance(i, str) and len(i) == 24 for i in ids)
    again = await http.post("/api/v1/treatments.json", json=batch, headers=secret(creds))
    assert [t["_id"] for t in again.json()] == ids
    rows = await db.execute(
        """SELECT event_type, carbs_g, insulin_u, basal_u_per_h, duration_min FROM treatments
           WHERE patient_id = %s ORDER BY created_at""",
        (patient,),
    )
    assert [tuple(r.values()) for r in await rows.fetchall()] == [
        ("Carb Correction", 45.0, None, None, None),
        ("Correction Bolus", None, 2.35, None, 0.0),
        ("Temp Basal", None, None, 0.8, 30.0),
    ]
    # Loop edits the carbs with PUT and the `_id` it was answered, then deletes the bolus
    edited = dict(batch[0], carbs=50, _id=ids[0])
    put = await http.put("/api/v1/treatments", json=edited, headers=secret(creds))
    assert put.status_code == 200 and put.json()[0]["carbs"] == 50 and put.json()[0]["_id"] == ids[0]
    gone = await http.delete(f"/api/v1/treatments/{ids[1]}", headers=secret(creds))
    assert gone.status_code == 200, gone.text
    read = await http.get("/api/v1/treatments.json", params={"count": "10"}, headers=secret(creds))
    assert [(t["eventType"], t.get("carbs")) for t in read.json()] == [
        ("Temp Basal", None),
        ("Carb Correction", 50),
    ]
    # treatments are never a source of alerts by themselves
    assert await scalar(db, "SELECT count(*) FROM alerts WHERE patient_id = %s", patient) == 0


async def test_trio_saves_its_note_and_reads_others_carbs_with_its_filters(
    http: httpx.AsyncClient, db: psycopg.AsyncConnection[Any]
) -> None:
    patient = await make_patient(db, "team-tx")
    trio = await provision_uploader(http, db, patient)
    xdrip = await provision_uploader(http, db, patient)
    now = datetime.now(UTC)
    note = {"eventType": "Note", "created_at": iso(now), "enteredBy": "Trio", "notes": "Trio Started"}
    saved = await http.post("/api/v1/treatments.json", json=[note], headers=secret(trio))
    assert saved.status_code == 200, saved.text
    assert saved.json()[0]["notes"] == "Trio Started"
    # xDrip+ posts its treatments with `uuid` and a +0000 offset
    when = (now - timedelta(minutes=20)).strftime("%Y-%m-%dT%H:%M:%S.000+0000")
    snack = {
        "uuid": str(uuid.uuid4()),
        "eventType": "<none>",
        "enteredBy": "xdrip",
        "carbs": 20,
        "insulin": 0,
        "created_at": when,
    }
    assert (await http.post("/api/v1/treatments", json=[snack], headers=secret(xdrip))).status_code == 200
    own_carbs = {
        "eventType": "Carb Correction",
        "created_at": iso(now - timedelta(minutes=10)),
        "enteredBy": "Trio",
        "carbs": 30,
    }
    assert (await http.post("/api/v1/treatments", json=own_carbs, headers=secret(trio))).status_code == 200

    # Trio's carbs fetch: find[carbs][$exists], find[enteredBy][$ne] (twice), find[created_at][$gt]
    params = [
        ("find[carbs][$exists]", "true"),
        ("find[enteredBy][$ne]", "Trio"),
        ("find[enteredBy][$ne]", "manual"),
        ("find[created_at][$gt]", iso(now - timedelta(hours=1))),
    ]
    carbs = await http.get("/api/v1/treatments.json", params=params, headers=secret(trio))
    assert carbs.status_code == 200, carbs.text
    assert [(t["enteredBy"], t["carbs"]) for t in carbs.json()] == [("xdrip", 20)]
    notes = await http.get("/api/v1/treatments", params={"find[eventType]": "Note"}, headers=secret(trio))
    assert [t["notes"] for t in notes.json()] == ["Trio Started"]
    # a temp target another app set, fetched as Trio does (its query's `+` reads as a space)
    target = {
        "eventType": "Temporary Target",
        "created_at": iso(now - timedelta(minutes=5)),
        "enteredBy": "nightscout",
        "targetTop": 140,
        "targetBottom": 140,
        "duration": 60,
        "reason": "Exercise",
    }
    assert (await http.post("/api/v1/treatments", json=target, headers=secret(xdrip))).status_code == 200
    targets = await http.get(
        "/api/v1/treatments.json?find[eventType]=Temporary+Target&find[enteredBy][$ne]=manual"
        "&find[enteredBy][$ne]=Trio&find[duration][$exists]=true",
        headers=secret(trio),
    )
    assert [(t["targetTop"], t["duration"]) for t in targets.json()] == [(140, 60)]
    # Trio deletes its carbs by filter; a delete without one is refused, not "everything"
    assert (await http.delete("/api/v1/treatments", headers=secret(trio))).status_code == 400
    gone = await http.delete(
        "/api/v1/treatments.json",
        params={"find[carbs][$exists]": "true", "find[enteredBy]": "Trio"},
        headers=secret(trio),
    )
    assert gone.status_code == 200 and gone.json()["n"] == 1
    left = await http.get("/api/v1/treatments", params={"find[carbs][$exists]": "true"}, headers=secret(trio))
    assert [t["enteredBy"] for t in left.json()] == ["xdrip"]
    refused = await http.get("/api/v1/treatments", params={"find[carbs][$gte]": "10"}, headers=secret(trio))
    assert refused.status_code == 400
    log = await scalar(
        db,
        "SELECT count(*) FROM audit_log WHERE action = 'nightscout.treatments.read' AND patient_id = %s",
        patient,
    )
    assert log == 4


async def test_androidaps_v1_site_change_and_exercise_and_a_refused_treatment(
    http: httpx.AsyncClient, db: psycopg.AsyncConnection[Any]
) -> None:
    patient = await make_patient(db, "team-tx")
    creds = await provision_uploader(http, db, patient)
    now = datetime.now(UTC)
    docs = [
        {
            "eventType": "Site Change",
            "created_at": iso(now - timedelta(hours=2)),
            "enteredBy": "AndroidAPS",
            "NSCLIENT_ID": 1,
        },
        {
            "eventType": "Exercise",
            "created_at": iso(now - timedelta(hours=1)),
            "duration": 45,
            "notes": "run",
        },
        {"eventType": "Note", "created_at": iso(now), "notes": "bad\u0000note"},
        {"eventType": "Note", "created_at": "1999-01-01T00:00:00Z", "notes": "old"},
    ]
    body = json.dumps(docs)
    posted = await http.post(
        "/api/v1/treatments", content=body, headers={**secret(creds), "Content-Type": "application/json"}
    )
    assert posted.status_code == 200, posted.text
    answers = posted.json()
    assert len(answers) == 4
    assert [a.get("dead_letter") for a in answers] == [None, None, "unstorable_text", "time_out_of_window"]

    async def letters() -> list[str]:
        cur = await db.execute(
            "SELECT reason FROM dead_letters WHERE device_id = %s AND source_topic = %s ORDER BY id",
            (creds["device_id"], "nightscout:/api/v1/treatments"),
        )
        rows = [r["reason"] for r in await cur.fetchall()]
        return rows if len(rows) == 2 else []

    assert await eventually(letters) == ["unstorable_text", "time_out_of_window"]
    assert await scalar(db, "SELECT count(*) FROM treatments WHERE patient_id = %s", patient) == 2


async def test_the_care_team_reads_treatments_and_nobody_else_does(
    http: httpx.AsyncClient, db: psycopg.AsyncConnection[Any]
) -> None:
    patient, other = await make_patient(db, "team-tx"), await make_patient(db, "team-tx-other")
    creds = await provision_uploader(http, db, patient)
    other_creds = await provision_uploader(http, db, other)
    batch = loop_batch(datetime.now(UTC))
    assert (await http.post("/api/v1/treatments", json=batch, headers=secret(creds))).status_code == 200
    clinician = await make_user(db, "clinician", ["team-tx"])
    outsider = await make_user(db, "clinician", ["team-tx-other"])
    researcher = await make_user(db, "researcher", [])

    read = await http.get(f"/api/v1/patients/{patient}/treatments", headers=auth(clinician))
    assert read.status_code == 200, read.text
    assert [(t["event_type"], t["carbs_g"], t["insulin_u"], t["basal_u_per_h"]) for t in read.json()] == [
        ("Carb Correction", 45.0, None, None),
        ("Correction Bolus", None, 2.35, None),
        ("Temp Basal", None, None, 0.8),
    ]
    assert read.json()[0]["device_id"] == creds["device_id"]
    assert (
        await http.get(f"/api/v1/patients/{patient}/treatments", headers=auth(outsider))
    ).status_code == 404
    assert (
        await http.get(f"/api/v1/patients/{patient}/treatments", headers=auth(researcher))
    ).status_code == 403
    # another patient's uploader never sees them, through either API
    assert (await http.get("/api/v1/treatments", headers=secret(other_creds))).json() == []
    address = client_address()
    assert (await http.get("/api/v1/treatments", headers=address)).status_code == 401
    log = await http.get(f"/api/v1/patients/{patient}/access-log", headers=auth(creds["admin"]))
    actions = [e["action"] for e in log.json()]
    assert actions.count("treatments.read") == 1 and actions.count("access.denied") == 1


async def test_loop_uploads_its_settings_as_a_profile_and_reads_it_back(
    http: httpx.AsyncClient, db: psycopg.AsyncConnection[Any]
) -> None:
    creds = await provision_uploader(http, db, await make_patient(db, "team-tx"))
    now = datetime.now(UTC)
    profile = {
        "defaultProfile": "Default",
        "startDate": iso(now),
        "mills": str(round(now.timestamp() * 1000)),
        "units": "mg/dL",
        "enteredBy": "Loop",
        "store": {
            "Default": {
                "dia": 6,
                "basal": [{"time": "00:00", "timeAsSeconds": 0, "value": 0.8}],
                "carbratio": [{"time": "00:00", "timeAsSeconds": 0, "value": 10}],
                "sens": [{"time": "00:00", "timeAsSeconds": 0, "value": 45}],
                "target_low": [{"time": "00:00", "timeAsSeconds": 0, "value": 100}],
                "target_high": [{"time": "00:00", "timeAsSeconds": 0, "value": 110}],
                "units": "mg/dL",
                "timezone": "Europe/London",
            }
        },
        "loopSettings": {"maximumBolus": 8, "maximumBasalRatePerHour": 3, "dosingEnabled": True},
    }
    for _ in range(2):
        posted = await http.post("/api/v1/profile.json", json=[profile], headers=secret(creds))
        assert posted.status_code == 200, posted.text
    read = await http.get("/api/v1/profile.json", headers=secret(creds))
    assert [p["defaultProfile"] for p in read.json()] == ["Default"]
    assert read.json()[0]["store"]["Default"]["basal"][0]["value"] == 0.8
