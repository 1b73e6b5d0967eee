"""py-nightscout, the PyPI client (Home Assistant's Nightscout integration uses it), reading
from the running system exactly as it reads from a Nightscout site."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
from py_nightscout import Api

from tests.conftest import eventually
from tests.factories import make_patient
from tests.integration.test_nightscout import _is, now_ms, provision_uploader, secret, stored


async def test_py_nightscout_reads_glucose_status_treatments_devicestatus_and_profiles(
    http: httpx.AsyncClient, db: psycopg.AsyncConnection[Any], api_url: str
) -> None:
    creds = await provision_uploader(http, db, await make_patient(db, "team-pypi"))
    t = now_ms() - 30_000
    # a Share-bridge upload without deltas, the oldest alone after a gap
    entries = [
        {"type": "sgv", "sgv": 150, "date": t, "trend": 3, "device": "share2"},
        {"type": "sgv", "sgv": 140, "date": t - 300_000, "trend": 4, "device": "share2"},
        {"type": "sgv", "sgv": 120, "date": t - 3_600_000, "trend": 4, "device": "share2"},
    ]
    assert (await http.post("/api/v1/entries", json=entries, headers=secret(creds))).status_code == 200
    await eventually(lambda: _is(stored(db, creds["device_id"]), 3))
    when = datetime.now(UTC).isoformat()
    carbs = {"eventType": "Meal Bolus", "created_at": when, "carbs": 30, "insulin": 3.0}
    assert (await http.post("/api/v1/treatments", json=carbs, headers=secret(creds))).status_code == 200
    status = {
        "device": "loop://iPhone",
        "created_at": when,
        "uploader": {"battery": 80},
        "pump": {"reservoir": 100},
    }
    assert (await http.post("/api/v1/devicestatus", json=status, headers=secret(creds))).status_code == 200
    profile = {
        "defaultProfile": "Default",
        "startDate": when,
        "created_at": when,
        "store": {"Default": {"dia": 5}},
    }
    assert (await http.post("/api/v1/profile", json=profile, headers=secret(creds))).status_code == 200

    for credential in (creds["api_secret"], f"token={creds['access_token']}"):
        api = Api(api_url, api_secret=credential)
        sgvs = await api.get_sgvs()
        assert [(s.sgv, s.delta, s.direction) for s in sgvs] == [
            (150, 10.0, "FortyFiveUp"),
            (140, 0, "Flat"),
            (120, 0, "Flat"),
        ]
        server = await api.get_server_status()
        assert server.status == "ok" and server.settings["units"] == "mg/dl"
        treatments = await api.get_treatments()
        assert [(x.eventType, x.carbs, x.insulin) for x in treatments] == [("Meal Bolus", 30, 3.0)]
        devices = await api.get_latest_devices_status()
        assert devices["loop://iPhone"].uploader.battery == 80
        profiles = await api.get_profiles()
        assert profiles.profile_definitions[0].defaultProfile == "Default"
