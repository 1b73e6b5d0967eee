"""AndroidAPS's NSClientV3 against the running system: its requests as its sources send them
(the token exchange after a 401, status, lastModified, create, search and history of entries,
treatments, devicestatus and profile, PATCH to invalidate), scoped and revocable."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg

from tests.conftest import eventually
from tests.factories import auth, client_address, make_patient
from tests.nightscout_support import now_ms, provision_uploader
from tests.stream import resolves_to, stored


def aaps(jwt: str = "") -> dict[str, str]:
    """AndroidAPS's interceptor: a Date header (ms) and the bearer token, empty at first (the
    trailing space is trimmed on the wire)."""
    return {"Date": str(int(time.time() * 1000)), "Authorization": f"Bearer {jwt}".strip()}


async def login(http: httpx.AsyncClient, creds: dict[str, Any]) -> str:
    answer = await http.get(f"/api/v2/authorization/request/{creds['access_token']}")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["exp"] - body["iat"] == 8 * 3600 and body["sub"] == creds["device_id"]
    token: str = body["token"]
    return token


async def test_androidaps_connects_uploads_and_syncs_through_api_v3(
    http: httpx.AsyncClient, db: psycopg.AsyncConnection[Any]
) -> None:
    patient = await make_patient(db, "team-v3")
    creds = await provision_uploader(http, db, patient)
    version = await http.get("/api/v3/version")
    assert version.status_code == 200 and version.json()["result"]["apiVersion"].startswith("3.")

    # the first call carries an empty bearer: 401, then the token exchange, then the retry
    assert (await http.get("/api/v3/status", headers={**aaps(), **client_address()})).status_code == 401
    jwt = await login(http, creds)
    status = await http.get("/api/v3/status", headers=aaps(jwt))
    assert status.status_code == 200, status.text
    permissions = status.json()["result"]["apiPermissions"]
    assert set(permissions) == {"devicestatus", "entries", "food", "profile", "settings", "treatments"}
    assert set(permissions.values()) == {"crud"}  # AndroidAPS uploads only with full permissions
    first = await http.get("/api/v3/lastModified", headers=aaps(jwt))
    assert first.json()["result"]["collections"]["entries"] == 0

    # entries: createSgv, then the dedup of a re-upload once stored
    t = now_ms() - 60_000
    sgv = {
        "type": "sgv",
        "sgv": 123.0,
        "date": t,
        "device": "AndroidAPS-DexcomG6",
        "direction": "Flat",
        "utcOffset": 60,
        "app": "AAPS",
        "units": "mg/dl",
        "isValid": True,
        "noise": 1.0,
    }
    created = await http.post("/api/v3/entries", json=sgv, headers=aaps(jwt))
    assert created.status_code == 201, created.text
    identifier = created.json()["identifier"]
    await eventually(lambda: resolves_to(stored(db, creds["device_id"]), 1))
    again = await http.post("/api/v3/entries", json=sgv, headers=aaps(jwt))
    assert again.status_code == 200 and again.json()["isDeduplication"] is True
    assert again.json()["identifier"] == identifier
    newer = await http.get(
        "/api/v3/entries", params={"sort": "date", "date$gt": str(t - 1), "limit": "10"}, headers=aaps(jwt)
    )
    assert [(e["identifier"], e["sgv"]) for e in newer.json()["result"]] == [(identifier, 123)]
    hist = await http.get("/api/v3/entries/history/0", params={"limit": "500"}, headers=aaps(jwt))
    assert [e["identifier"] for e in hist.json()["result"]] == [identifier]
    etag = hist.headers["ETag"]
    assert int(etag[3:-1]) == hist.json()["result"][0]["srvModified"]  # AndroidAPS parses W/"<ms>"

    # treatments: a bolus created once, found by created_at, invalidated with PATCH
    bolus = {
        "eventType": "Correction Bolus",
        "date": t,
        "utcOffset": 60,
        "app": "AAPS",
        "insulin": 1.5,
        "type": "SMB",
        "isSMB": True,
        "isBasalInsulin": False,
        "pumpId": 4102,
        "pumpType": "ACCU_CHEK_INSIGHT_BLUETOOTH",
        "pumpSerial": "33013206",
        "isValid": True,
    }
    made = await http.post("/api/v3/treatments", json=bolus, headers=aaps(jwt))
    assert made.status_code == 201, made.text
    bolus_id = made.json()["identifier"]
    dup = await http.post("/api/v3/treatments", json=bolus, headers=aaps(jwt))
    assert dup.status_code == 200 and dup.json()["isDeduplication"] and dup.json()["identifier"] == bolus_id
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    found = await http.get(
        "/api/v3/treatments",
        params={"sort": "created_at", "created_at$gt": since, "limit": "10"},
        headers=aaps(jwt),
    )
    assert [(x["identifier"], x["insulin"]) for x in found.json()["result"]] == [(bolus_id, 1.5)]
    invalid = await http.patch(f"/api/v3/treatments/{bolus_id}", json={"isValid": False}, headers=aaps(jwt))
    assert invalid.status_code == 200, invalid.text
    changes = await http.get("/api/v3/treatments/history/0", params={"limit": "100"}, headers=aaps(jwt))
    assert [(x["identifier"], x.get("isValid", True)) for x in changes.json()["result"]] == [
        (bolus_id, False)
    ]
    assert (await http.get("/api/v3/treatments", headers=aaps(jwt))).json()["result"] == []

    # devicestatus and profile, kept as uploaded
    device_status = {
        "date": t,
        "device": "openaps://samsung SM-G970F",
        "pump": {"reservoir": 80.5, "battery": {"percent": 50}},
        "openaps": {"iob": {"iob": 0.42}, "suggested": {"COB": 12, "reason": "COB: 12"}},
        "uploaderBattery": 55,
        "isCharging": False,
        "app": "AAPS",
    }
    ds = await http.post("/api/v3/devicestatus", json=device_status, headers=aaps(jwt))
    assert ds.status_code == 201, ds.text
    ds_hist = await http.get("/api/v3/devicestatus/history/0", headers=aaps(jwt))
    assert ds_hist.json()["result"][0]["openaps"]["iob"]["iob"] == 0.42
    profile = {
        "date": t,
        "defaultProfile": "Tuned",
        "units": "mg/dl",
        "store": {"Tuned": {"dia": 5, "basal": [{"time": "00:00", "timeAsSeconds": 0, "value": 0.5}]}},
        "app": "AAPS",
    }
    assert (await http.post("/api/v3/profile", json=profile, headers=aaps(jwt))).status_code == 201
    last = await http.get("/api/v3/profile", params={"sort$desc": "date", "limit": "1"}, headers=aaps(jwt))
    assert last.json()["result"][0]["defaultProfile"] == "Tuned"
    assert (await http.get("/api/v3/food", params={"limit": "10"}, headers=aaps(jwt))).json()["result"] == []

    collections = (await http.get("/api/v3/lastModified", headers=aaps(jwt))).json()["result"]["collections"]
    assert all(collections[c] > 0 for c in ("entries", "treatments", "devicestatus", "profile"))

    # unknown filters are refused, not ignored; unknown collections are not served
    refused = await http.get("/api/v3/treatments", params={"insulin$gt": "1"}, headers=aaps(jwt))
    assert refused.status_code == 400
    assert (await http.get("/api/v3/activity", headers=aaps(jwt))).status_code == 404

    # every read is in the patient's access log
    log = await http.get(f"/api/v1/patients/{patient}/access-log", headers=auth(creds["admin"]))
    actions = {e["action"] for e in log.json() if e["actor"] == f"nightscout:{creds['device_id']}"}
    assert {
        "nightscout.entries.read",
        "nightscout.treatments.read",
        "nightscout.devicestatus.read",
    } <= actions


async def test_the_session_token_reaches_one_patient_and_ends_with_the_uploader(
    http: httpx.AsyncClient, db: psycopg.AsyncConnection[Any]
) -> None:
    alice, bob = await make_patient(db, "team-v3"), await make_patient(db, "team-v3")
    alice_up, bob_up = await provision_uploader(http, db, alice), await provision_uploader(http, db, bob)
    bob_jwt = await login(http, bob_up)
    note = {"eventType": "Note", "date": now_ms(), "notes": "bob's", "app": "AAPS"}
    assert (await http.post("/api/v3/treatments", json=note, headers=aaps(bob_jwt))).status_code == 201
    alice_jwt = await login(http, alice_up)
    assert (await http.get("/api/v3/treatments", headers=aaps(alice_jwt))).json()["result"] == []
    assert (await http.get("/api/v3/treatments/history/0", headers=aaps(alice_jwt))).json()["result"] == []

    address = client_address()
    bad = await http.get("/api/v2/authorization/request/not-a-token", headers=address)
    assert bad.status_code == 401
    # the API secret is no access token; nor is a clinician's dashboard token a session
    assert (
        await http.get(f"/api/v2/authorization/request/{bob_up['api_secret_sha1']}", headers=address)
    ).status_code == 401
    revoked = await http.post(f"/api/v1/devices/{bob_up['device_id']}/revoke", headers=auth(bob_up["admin"]))
    assert revoked.status_code == 200
    assert (await http.get("/api/v3/status", headers={**aaps(bob_jwt), **address})).status_code == 401
    assert (
        await http.get(f"/api/v2/authorization/request/{bob_up['access_token']}", headers=address)
    ).status_code == 401
