"""The requests of the Nightscout apps nobody here wrote, as their sources send them (recorded
shapes: xDrip+ as uploader and follower, Loop, Trio, Dexcom Share and CareLink bridges,
py-nightscout), against the running API, Kafka, processor and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg

from tests.conftest import eventually
from tests.factories import client_address, make_patient
from tests.nightscout_support import now_ms, provision_uploader, secret
from tests.stream import resolves_to, stored

FIVE_MIN_MS = 300_000


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def test_xdrip_as_a_follower_reads_with_its_cache_buster(
    http: httpx.AsyncClient, db: psycopg.AsyncConnection[Any]
) -> None:
    """xDrip+'s Nightscout follower: `GET entries.json?count=N&rr=<ms>`, `api-secret` header."""
    creds = await provision_uploader(http, db, await make_patient(db, "team-ns"))
    t = now_ms() - 60_000
    up = [{"type": "sgv", "date": t - i * FIVE_MIN_MS, "sgv": 100 + i, "direction": "Flat"} for i in range(3)]
    assert (await http.post("/api/v1/entries", json=up, headers=secret(creds))).status_code == 200
    await eventually(lambda: resolves_to(stored(db, creds["device_id"]), 3))
    follow = await http.get(
        "/api/v1/entries.json",
        params={"count": "24", "rr": str(now_ms())},
        headers={"api-secret": creds["api_secret_sha1"], "Accept": "application/json"},
    )
    assert follow.status_code == 200, follow.text
    assert [e["sgv"] for e in follow.json()] == [100, 101, 102]


async def test_loop_saves_the_service_only_with_a_valid_secret(
    http: httpx.AsyncClient, db: psycopg.AsyncConnection[Any]
) -> None:
    """Loop's setup checks the site with `GET /api/v1/experiments/test` and its `api-secret`."""
    creds = await provision_uploader(http, db, await make_patient(db, "team-ns"))
    ok = await http.get("/api/v1/experiments/test", headers={"api-secret": creds["api_secret_sha1"]})
    assert ok.status_code == 200 and ok.json() == {"status": "ok"}
    address = client_address()
    assert (await http.get("/api/v1/experiments/test", headers=address)).status_code == 401
    wrong = {"api-secret": "0" * 40, **address}
    assert (await http.get("/api/v1/experiments/test", headers=wrong)).status_code == 401


async def test_every_token_form_nightscout_takes(
    http: httpx.AsyncClient, db: psycopg.AsyncConnection[Any]
) -> None:
    creds = await provision_uploader(http, db, await make_patient(db, "team-ns"))
    token = creds["access_token"]
    forms: list[tuple[dict[str, str], dict[str, str]]] = [
        ({"api-secret": f"token={token}"}, {}),
        ({}, {"token": token}),
        ({"Authorization": f"Bearer {token}"}, {}),
        ({"api-secret": token}, {}),
        ({}, {"secret": creds["api_secret_sha1"]}),
    ]
    for headers, params in forms:
        response = await http.get("/api/v1/verifyauth", headers=headers, params=params)
        assert response.status_code == 200, (headers, params, response.text)
    address = client_address()
    refused = await http.get("/api/v1/verifyauth", headers={"api-secret": "token=not-a-token", **address})
    assert refused.status_code == 401


async def test_share_and_carelink_trends_are_kept_and_every_cgm_entry_has_a_delta(
    http: httpx.AsyncClient, db: psycopg.AsyncConnection[Any]
) -> None:
    """share2nightscout-bridge and minimed-connect send a numeric `trend`; py-nightscout reads
    `delta` from every entry. Deltas are computed where the uploader sent none."""
    creds = await provision_uploader(http, db, await make_patient(db, "team-ns"))
    t = now_ms() - 30_000
    share = [
        {
            "sgv": 130,
            "date": t,
            "dateString": iso(t),
            "trend": 3,
            "direction": "FortyFiveUp",
            "device": "share2",
            "type": "sgv",
        },
        {
            "sgv": 120,
            "date": t - FIVE_MIN_MS,
            "dateString": iso(t - FIVE_MIN_MS),
            "trend": 4,
            "device": "share2",
            "type": "sgv",
        },
    ]
    carelink = {
        "type": "sgv",
        "sgv": 110,
        "date": t - 2 * FIVE_MIN_MS,
        "trend": 5,
        "device": "connect://paradigm",
    }
    xdrip = {"type": "sgv", "sgv": 100, "date": t - 4 * FIVE_MIN_MS, "delta": -2.5, "direction": "Flat"}
    posted = await http.post("/api/v1/entries", json=[*share, carelink, xdrip], headers=secret(creds))
    assert posted.status_code == 200, posted.text
    assert [e["trend"] for e in posted.json()] == [3, 4, 5, 4]
    await eventually(lambda: resolves_to(stored(db, creds["device_id"]), 4))

    read = await http.get("/api/v1/entries/sgv.json", params={"count": "4"}, headers=secret(creds))
    entries = read.json()
    assert [(e["sgv"], e["trend"], e["direction"]) for e in entries] == [
        (130, 3, "FortyFiveUp"),
        (120, 4, "Flat"),
        (110, 5, "FortyFiveDown"),
        (100, 4, "Flat"),
    ]
    # computed from the previous entry, scaled to 5 minutes; the uploaded one kept; a 10-minute
    # gap is still a trend (halved)
    assert [e["delta"] for e in entries] == [10.0, 10.0, 5.0, -2.5]
    oldest = await http.get(
        "/api/v1/entries.json",
        params={"count": "1", "find[date][$lte]": str(t - 2 * FIVE_MIN_MS)},
        headers=secret(creds),
    )
    assert oldest.json()[0]["delta"] == 5.0


async def test_devicestatus_is_kept_as_uploaded_and_read_back_by_followers(
    http: httpx.AsyncClient, db: psycopg.AsyncConnection[Any]
) -> None:
    """Loop posts its loop and pump state; followers (LoopFollow, Nightguard) read it back."""
    creds = await provision_uploader(http, db, await make_patient(db, "team-ns"))
    none_yet = await http.get("/api/v1/devicestatus.json", headers=secret(creds))
    assert none_yet.status_code == 200 and none_yet.json() == []
    t = now_ms()
    loop = {
        "device": "loop://iPhone",
        "created_at": iso(t - 60_000),
        "loop": {"iob": {"iob": 1.25, "timestamp": iso(t - 60_000)}, "cob": {"cob": 12}, "name": "Loop"},
        "pump": {"reservoir": 120.5, "clock": iso(t - 60_000)},
        "uploader": {"battery": 64, "name": "iPhone"},
    }
    xdrip = {"device": "xDrip-DexcomG6", "uploader": {"battery": 63}, "created_at": iso(t)}
    posted = await http.post("/api/v1/devicestatus", json=[loop, xdrip], headers=secret(creds))
    assert posted.status_code == 200, posted.text
    assert [len(d["_id"]) for d in posted.json()] == [24, 24]
    again = await http.post("/api/v1/devicestatus", json=[loop, xdrip], headers=secret(creds))
    assert [d["_id"] for d in again.json()] == [d["_id"] for d in posted.json()]

    read = await http.get("/api/v1/devicestatus", params={"count": "5"}, headers=secret(creds))
    found = read.json()
    assert [d["device"] for d in found] == ["xDrip-DexcomG6", "loop://iPhone"]
    assert found[1]["loop"]["iob"]["iob"] == 1.25 and found[1]["pump"]["reservoir"] == 120.5

    async def battery() -> Any:
        cur = await db.execute("SELECT battery_pct FROM devices WHERE id = %s", (creds["device_id"],))
        row = await cur.fetchone()
        return row and row["battery_pct"]

    await eventually(lambda: resolves_to(battery(), 63))
    count = await db.execute(
        "SELECT count(*) AS n FROM audit_log WHERE action = 'nightscout.devicestatus.read' AND actor = %s",
        (f"nightscout:{creds['device_id']}",),
    )
    row = await count.fetchone()
    assert row is not None and row["n"] == 2


async def test_an_upload_with_a_refused_entry_is_answered_entry_for_entry(
    http: httpx.AsyncClient, db: psycopg.AsyncConnection[Any]
) -> None:
    """Loop counts the answer against the entries it sent; one short, it uploads again for ever."""
    creds = await provision_uploader(http, db, await make_patient(db, "team-ns"))
    t = now_ms() - 60_000
    loop = [
        {
            "sgv": 120,
            "date": t,
            "dateString": iso(t),
            "type": "sgv",
            "device": "loop://iPhone",
            "direction": "Flat",
            "trend": 4,
        },
        {"sgv": 118, "date": 631152000000, "type": "sgv", "device": "loop://iPhone"},
    ]
    for _ in range(2):
        answer = await http.post("/api/v1/entries", json=loop, headers=secret(creds))
        assert answer.status_code == 200, answer.text
        assert len(answer.json()) == 2
        assert answer.json()[0]["sgv"] == 120 and answer.json()[1]["dead_letter"] == "time_out_of_window"
    await eventually(lambda: resolves_to(stored(db, creds["device_id"]), 1))
