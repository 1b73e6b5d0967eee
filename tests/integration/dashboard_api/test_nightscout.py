"""Nightscout-compatible uploads and follower reads through the running system: the real API
process, Kafka, the processor and PostgreSQL, with payloads shaped as the apps send them."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg

from dashboard_api.app import create_app
from telehealth.nightscout import api_secret_header
from telehealth.settings import Settings
from telehealth.storage import uploaders
from tests.commands import telehealth
from tests.conftest import eventually
from tests.factories import auth, client_address, make_patient, make_user
from tests.nightscout_support import (
    now_ms,
    provision_uploader,
    scalar,
    secret,
    xdrip_day,
)
from tests.stream import resolves_to, stored

_ids = itertools.count(1)


async def test_a_day_of_cgm_uploaded_twice_is_stored_once_and_read_back_in_nightscout_shape(
    http: httpx.AsyncClient, db: psycopg.AsyncConnection[Any]
) -> None:
    patient = await make_patient(db, "team-ns")
    creds = await provision_uploader(http, db, patient)
    device = creds["device_id"]
    end = now_ms() - 60_000
    day = xdrip_day(end)

    first = await http.post("/api/v1/entries", json=day, headers=secret(creds))
    assert first.status_code == 200, first.text
    echoed = first.json()
    assert len(echoed) == 288 and {e["type"] for e in echoed} == {"sgv"}
    assert [e["sgv"] for e in echoed] == [e["sgv"] for e in day]
    # the routine re-upload, in another order and to the `.json` path
    again = await http.post("/api/v1/entries.json", json=day[::-1], headers=secret(creds))
    assert again.status_code == 200, again.text
    assert {e["_id"] for e in again.json()} == {e["_id"] for e in echoed}

    await eventually(lambda: resolves_to(stored(db, device), 288))
    assert await scalar(db, "SELECT count(*) FROM readings WHERE device_id = %s", device) == 288
    # backfilled readings are flagged late (no live alarms): all but the two newest, which were
    # 1 and 6 minutes old on arrival
    late = await scalar(
        db, "SELECT count(*) FROM readings WHERE device_id = %s AND 'late' = ANY (quality)", device
    )
    assert late == 286
    newest_quality = await scalar(
        db, "SELECT quality FROM readings WHERE device_id = %s ORDER BY measured_at DESC LIMIT 1", device
    )
    assert newest_quality == []

    read = await http.get("/api/v1/entries.json", params={"count": 300, "token": creds["access_token"]})
    assert read.status_code == 200, read.text
    entries = read.json()
    assert len(entries) == 288
    assert [(e["date"], e["sgv"], e["direction"], e["type"]) for e in entries] == [
        (e["date"], e["sgv"], e["direction"], "sgv") for e in day
    ]
    assert entries[0]["dateString"] == day[0]["dateString"] and entries[0]["device"] == "xDrip-DexcomG6"

    default = await http.get("/api/v1/entries", headers={"Authorization": f"Bearer {creds['access_token']}"})
    assert [e["date"] for e in default.json()] == [e["date"] for e in day[:10]]
    hour_ago = end - 3_600_000
    recent = await http.get(
        "/api/v1/entries/sgv.json",
        params={"find[date][$gte]": str(hour_ago), "count": "1000"},
        headers=secret(creds),
    )
    assert recent.status_code == 200, recent.text
    assert [e["date"] for e in recent.json()] == [e["date"] for e in day if e["date"] >= hour_ago]
    current = await http.get("/api/v1/entries/current.json", headers=secret(creds))
    assert [e["date"] for e in current.json()] == [day[0]["date"]]

    status = await http.get("/api/v1/status.json", headers=secret(creds))
    assert status.status_code == 200
    assert status.json()["status"] == "ok" and status.json()["settings"]["units"] == "mg/dl"

    # every read is in the patient's access log, naming the credential
    log = await http.get(f"/api/v1/patients/{patient}/access-log", headers=auth(creds["admin"]))
    actions = [(e["action"], e["actor"]) for e in log.json()]
    assert actions.count(("nightscout.entries.read", f"nightscout:{device}")) == 4
    assert ("nightscout.status.read", f"nightscout:{device}") in actions


async def test_duplicates_meter_readings_and_an_mmol_client(
    http: httpx.AsyncClient, db: psycopg.AsyncConnection[Any]
) -> None:
    patient = await make_patient(db, "team-ns")
    creds = await provision_uploader(http, db, patient)
    device = creds["device_id"]
    t = now_ms() - 120_000
    upload = [
        {"type": "sgv", "date": t, "sgv": 120, "direction": "Flat", "device": "AndroidAPS-DexcomG6"},
        {"type": "sgv", "date": t, "sgv": 120, "direction": "Flat", "device": "AndroidAPS-DexcomG6"},
        {"type": "mbg", "date": t, "mbg": 7.2, "units": "mmol", "device": "AndroidAPS"},
        {"type": "mbg", "date": t - 60_000, "mbg": 99, "device": "Contour"},
    ]
    response = await http.post("/api/v1/entries", json=upload, headers=secret(creds))
    assert response.status_code == 200, response.text
    assert [e["type"] for e in response.json()] == ["sgv", "sgv", "mbg", "mbg"]
    await eventually(lambda: resolves_to(stored(db, device), 3))

    cur = await db.execute(
        "SELECT source, value, unit FROM readings WHERE device_id = %s ORDER BY seq", (device,)
    )
    rows = await cur.fetchall()
    assert [(r["source"], round(r["value"], 2), r["unit"]) for r in rows] == [
        ("smbg", 5.5, "mmol/L"),
        ("cgm", 6.66, "mmol/L"),
        ("smbg", 7.2, "mmol/L"),
    ]
    meters = await http.get("/api/v1/entries/mbg.json", headers=secret(creds))
    assert [(e["mbg"], e["device"]) for e in meters.json()] == [(130, "AndroidAPS"), (99, "Contour")]
    both = await http.get("/api/v1/entries.json", params={"find[type]": "sgv"}, headers=secret(creds))
    assert [e["sgv"] for e in both.json()] == [120]


async def test_entries_that_are_no_readings_become_dead_letters_beside_good_ones(
    http: httpx.AsyncClient, db: psycopg.AsyncConnection[Any]
) -> None:
    patient = await make_patient(db, "team-ns")
    creds = await provision_uploader(http, db, patient)
    device = creds["device_id"]
    t = now_ms() - 30_000
    bad = [
        {"type": "sgv", "date": t - 1000, "direction": "Flat"},  # no value
        {"type": "cal", "date": t - 2000, "slope": 850, "intercept": 32000, "scale": 1},
        {"type": "sgv", "sgv": 110},  # no time at all
        {"type": "sgv", "date": 631152000000, "sgv": 110},  # 1990
        {"type": "sgv", "date": t - 3000, "sgv": 110, "device": "xDrip\ud800"},
        {"type": "sgv", "date": t - 4000, "sgv": 110, "units": "furlongs"},
    ]
    good = {"type": "sgv", "date": t, "sgv": 101, "direction": "Flat"}
    body = json.dumps([bad[0], good, *bad[1:]])  # keeps the lone surrogate as \ud800
    response = await http.post(
        "/api/v1/entries", content=body, headers={**secret(creds), "Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text
    answers = response.json()
    # one answer per entry sent, in order; the refused ones marked with their reason
    assert len(answers) == 1 + len(bad)
    assert [a.get("sgv") for a in answers] == [None, 101, None, None, None, None, None]
    assert [a.get("stored", True) for a in answers] == [False, True, False, False, False, False, False]
    assert [a.get("dead_letter") for a in answers] == [
        "schema_invalid",
        None,
        "schema_invalid",
        "schema_invalid",
        "time_out_of_window",
        "unstorable_text",
        "unknown_unit",
    ]
    assert all(len(a["_id"]) == 24 for a in answers)

    async def letters() -> list[dict[str, Any]]:
        cur = await db.execute(
            "SELECT reason, raw, source_topic FROM dead_letters WHERE device_id = %s ORDER BY id", (device,)
        )
        rows = await cur.fetchall()
        return rows if len(rows) == len(bad) else []

    found = await eventually(letters)
    assert sorted(r["reason"] for r in found) == sorted(
        [
            "schema_invalid",
            "schema_invalid",
            "schema_invalid",
            "time_out_of_window",
            "unstorable_text",
            "unknown_unit",
        ]
    )
    assert {r["source_topic"] for r in found} == {"nightscout:/api/v1/entries"}
    # each letter keeps the entry as the client sent it
    assert sorted(json.loads(bytes(r["raw"])).get("date", 0) for r in found) == sorted(
        e.get("date", 0) for e in bad
    )
    await eventually(lambda: resolves_to(stored(db, device), 1))

    not_json = await http.post("/api/v1/entries", content=b"{not json", headers=secret(creds))
    assert not_json.status_code == 400
    not_entries = await http.post("/api/v1/entries", json=[1, 2], headers=secret(creds))
    assert not_entries.status_code == 400


async def test_a_credential_reaches_only_its_own_patient_and_stops_when_revoked(
    http: httpx.AsyncClient, db: psycopg.AsyncConnection[Any]
) -> None:
    alice, bob = await make_patient(db, "team-ns"), await make_patient(db, "team-ns")
    alice_up, bob_up = await provision_uploader(http, db, alice), await provision_uploader(http, db, bob)
    t = now_ms() - 60_000
    posted = await http.post(
        "/api/v1/entries", json={"type": "sgv", "date": t, "sgv": 77}, headers=secret(bob_up)
    )
    assert posted.status_code == 200, posted.text
    await eventually(lambda: resolves_to(stored(db, bob_up["device_id"]), 1))

    address = client_address()
    assert (await http.get("/api/v1/entries.json", headers=address)).status_code == 401
    wrong = {"API-SECRET": api_secret_header("not the secret"), **address}
    assert (await http.get("/api/v1/entries.json", headers=wrong)).status_code == 401
    plain = {"API-SECRET": alice_up["api_secret"], **address}  # the secret itself, not its SHA-1
    assert (await http.get("/api/v1/entries.json", headers=plain)).status_code == 401
    # Alice's credential sees Alice's (empty) data, never Bob's
    alice_view = await http.get("/api/v1/entries.json", headers=secret(alice_up))
    assert alice_view.status_code == 200 and alice_view.json() == []
    bob_view = await http.get("/api/v1/entries.json", headers=secret(bob_up))
    assert [e["sgv"] for e in bob_view.json()] == [77]
    # the dashboard's bearer tokens are not Nightscout credentials, nor the reverse
    clinician = await make_user(db, "clinician", ["team-ns"])
    assert (await http.get("/api/v1/entries.json", headers={**auth(clinician), **address})).status_code == 401
    assert (await http.get("/api/v1/auth/me", headers=auth(bob_up["access_token"]))).status_code == 401

    verify = await http.get("/api/v1/verifyauth", headers=secret(bob_up))
    assert verify.json()["message"]["canWrite"] is True
    revoked = await http.post(f"/api/v1/devices/{bob_up['device_id']}/revoke", headers=auth(bob_up["admin"]))
    assert revoked.status_code == 200, revoked.text
    for headers in (secret(bob_up), {"Authorization": f"Bearer {bob_up['access_token']}"}):
        assert (await http.get("/api/v1/entries.json", headers={**headers, **address})).status_code == 401
    again = await http.post(
        "/api/v1/entries",
        json={"type": "sgv", "date": t + 1000, "sgv": 78},
        headers={**secret(bob_up), **address},
    )
    assert again.status_code == 401


async def test_reassigning_an_uploader_issues_new_credentials(
    http: httpx.AsyncClient, db: psycopg.AsyncConnection[Any]
) -> None:
    first, second = await make_patient(db, "team-ns"), await make_patient(db, "team-ns")
    creds = await provision_uploader(http, db, first)
    moved = await http.post(
        f"/api/v1/devices/{creds['device_id']}/reassign",
        json={"patient_id": str(second)},
        headers=auth(creds["admin"]),
    )
    assert moved.status_code == 200, moved.text
    fresh = moved.json()
    assert fresh["patient_id"] == str(second) and fresh["api_secret"] != creds["api_secret"]
    address = client_address()
    old = await http.get("/api/v1/entries.json", headers={**secret(creds), **address})
    assert old.status_code == 401
    assert (await http.get("/api/v1/entries.json", headers=secret(fresh))).status_code == 200


async def test_failed_attempts_and_busy_credentials_are_rate_limited(
    http: httpx.AsyncClient, db: psycopg.AsyncConnection[Any]
) -> None:
    patient = await make_patient(db, "team-ns")
    creds = await provision_uploader(http, db, patient)
    address = client_address()
    wrong = {"API-SECRET": api_secret_header("guess"), **address}
    codes = [(await http.get("/api/v1/verifyauth", headers=wrong)).status_code for _ in range(21)]
    assert codes == [401] * 20 + [429]
    # the address is locked even for a good credential; another address is not
    locked = await http.get("/api/v1/verifyauth", headers={**secret(creds), **address})
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 0
    busy = [
        (await http.get("/api/v1/verifyauth", headers={**secret(creds), **client_address()})).status_code
        for _ in range(121)
    ]
    assert busy == [200] * 120 + [429]


async def test_uploader_battery_from_devicestatus_raises_battery_low(
    http: httpx.AsyncClient, db: psycopg.AsyncConnection[Any]
) -> None:
    patient = await make_patient(db, "team-ns")
    creds = await provision_uploader(http, db, patient)
    status = {
        "device": "xDrip-DexcomG6",
        "uploader": {"battery": 12, "type": "PHONE"},
        "created_at": datetime.now(UTC).isoformat(),
    }
    aaps = {"device": "openaps://samsung", "pump": {"reservoir": 120}, "uploaderBattery": 12}
    response = await http.post("/api/v1/devicestatus", json=[status, aaps], headers=secret(creds))
    assert response.status_code == 200, response.text
    assert len(response.json()) == 2 and all(len(d["_id"]) == 24 for d in response.json())

    async def battery() -> Any:
        return await scalar(db, "SELECT battery_pct FROM devices WHERE id = %s", creds["device_id"])

    await eventually(lambda: resolves_to(battery(), 12))

    async def alert() -> Any:
        cur = await db.execute(
            "SELECT rule FROM alerts WHERE patient_id = %s AND rule = 'battery_low' AND status = 'open'",
            (patient,),
        )
        return await cur.fetchone()

    await eventually(alert)
    ignored = await http.post(
        "/api/v1/devicestatus", json={"device": "loop://iPhone", "loop": {"iob": {}}}, headers=secret(creds)
    )
    assert ignored.status_code == 200


async def test_reads_refuse_filters_they_cannot_apply_and_ignore_other_parameters(
    http: httpx.AsyncClient, db: psycopg.AsyncConnection[Any]
) -> None:
    creds = await provision_uploader(http, db, await make_patient(db, "team-ns"))
    for params in ({"find[sgv][$gte]": "100"}, {"count": "0"}, {"count": "many"}, {"find[date]": "1"}):
        response = await http.get("/api/v1/entries.json", params=params, headers=secret(creds))
        assert response.status_code == 400, (params, response.text)
    # parameters that are no filter are ignored, as Nightscout ignores them
    for params in ({"since": "x"}, {"rr": "1733540000000"}, {"count": "3", "_": "cache-buster"}):
        response = await http.get("/api/v1/entries.json", params=params, headers=secret(creds))
        assert response.status_code == 200, (params, response.text)
    assert (await http.get("/api/v1/entries/cal.json", headers=secret(creds))).status_code == 404
    ranged = await http.get(
        "/api/v1/entries.json",
        params={"find[dateString][$gte]": (datetime.now(UTC) - timedelta(hours=1)).isoformat()},
        headers=secret(creds),
    )
    assert ranged.status_code == 200 and ranged.json() == []


async def test_the_api_starts_without_kafka_and_uploads_say_why(
    settings: Settings, db: psycopg.AsyncConnection[Any]
) -> None:
    """Kafka is needed for uploads only: without it the API serves reads and everything else."""
    patient = await make_patient(db, "team-ns")
    creds = await uploaders.provision(db, device_id=f"ns-nokafka-{next(_ids)}", patient_id=patient)
    app = create_app(settings.model_copy(update={"kafka_bootstrap": None}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            headers = {"API-SECRET": creds.api_secret_sha1}
            assert (await client.get("/healthz")).status_code == 200
            assert (await client.get("/api/v1/entries.json", headers=headers)).status_code == 200
            upload = await client.post(
                "/api/v1/entries", json={"type": "sgv", "date": now_ms(), "sgv": 100}, headers=headers
            )
            assert upload.status_code == 503
            assert "TELEHEALTH_KAFKA_BOOTSTRAP" in upload.json()["detail"]
            assert upload.headers["Retry-After"] == "5"


async def test_the_cli_provisions_revokes_and_reassigns_an_uploader(
    settings: Settings, http: httpx.AsyncClient, db: psycopg.AsyncConnection[Any]
) -> None:
    first, second = await make_patient(db, "team-ns"), await make_patient(db, "team-ns")
    device = f"ns-cli-{next(_ids)}"
    made = await asyncio.to_thread(
        telehealth,
        settings,
        "devices",
        "provision",
        "--device-id",
        device,
        "--patient-id",
        str(first),
        "--kind",
        "uploader",
    )
    assert made.returncode == 0, made.stderr
    header = re.search(r"API-SECRET header value: ([0-9a-f]{40})", made.stdout)
    token = re.search(r"access token \(shown once; \?token= or Bearer\): (\S+)", made.stdout)
    assert header and token, made.stdout
    assert (await http.get("/api/v1/verifyauth", headers={"API-SECRET": header[1]})).status_code == 200
    assert await scalar(db, "SELECT count(*) FROM uploader_credentials WHERE device_id = %s", device) == 1

    moved = await asyncio.to_thread(
        telehealth, settings, "devices", "reassign", "--device-id", device, "--patient-id", str(second)
    )
    assert moved.returncode == 0, moved.stderr
    assert await scalar(db, "SELECT patient_id FROM devices WHERE id = %s", device) == second
    new_token = re.search(r"access token \(shown once; \?token= or Bearer\): (\S+)", moved.stdout)
    assert new_token and new_token[1] != token[1]
    address = client_address()
    old = await http.get("/api/v1/verifyauth", params={"token": token[1]}, headers=address)
    assert old.status_code == 401
    assert (await http.get("/api/v1/verifyauth", params={"token": new_token[1]})).status_code == 200

    revoked = await asyncio.to_thread(telehealth, settings, "devices", "revoke", "--device-id", device)
    assert revoked.returncode == 0, revoked.stderr
    gone = await http.get("/api/v1/verifyauth", params={"token": new_token[1]}, headers=address)
    assert gone.status_code == 401
