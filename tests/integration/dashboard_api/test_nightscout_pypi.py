"""The PyPI clients, unchanged, against the running system: py-nightscout (Home Assistant's
Nightscout integration uses it) reading as from a Nightscout site, and nightscout-cli pushing
and reading entries."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
from py_nightscout import Api

from tests.conftest import eventually
from tests.factories import make_patient
from tests.nightscout_support import now_ms, provision_uploader, secret
from tests.stream import resolves_to, stored


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
    await eventually(lambda: resolves_to(stored(db, creds["device_id"]), 3))
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


def _cli(api_url: str, secret_sha1: str, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """nightscout-cli, the PyPI command, as a user runs it (its config file kept out of HOME)."""
    url = urlsplit(api_url)
    command = [_nightscout_cli(), "--host", str(url.hostname), "--port", str(url.port)]
    return subprocess.run(
        [*command, "--api-secret", secret_sha1, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "HOME": str(home)},
        check=False,
    )


def _nightscout_cli() -> str:
    found = shutil.which("nightscout", path=str(Path(sys.executable).parent))
    assert found, "nightscout-cli is a test dependency: pip install -e '.[test]'"
    return found


async def test_nightscout_cli_pushes_gets_lists_and_reads_history(
    http: httpx.AsyncClient, db: psycopg.AsyncConnection[Any], api_url: str, tmp_path: Path
) -> None:
    creds = await provision_uploader(http, db, await make_patient(db, "team-pypi"))
    sha1 = creds["api_secret_sha1"]
    pushed = await asyncio.to_thread(
        _cli, api_url, sha1, tmp_path, "push", "134", "--direction", "FortyFiveUp"
    )
    assert pushed.returncode == 0, pushed.stderr
    earlier = await asyncio.to_thread(_cli, api_url, sha1, tmp_path, "push", "120", "--minutes-ago", "5")
    assert earlier.returncode == 0, earlier.stderr
    await eventually(lambda: resolves_to(stored(db, creds["device_id"]), 2))

    got = await asyncio.to_thread(_cli, api_url, sha1, tmp_path, "get", "2")
    assert got.returncode == 0, got.stderr
    assert [line.split()[1:] for line in got.stdout.splitlines()] == [
        ["120", "mg/dL", "NONE"],
        ["134", "mg/dL", "FortyFiveUp"],
    ]
    listed = await asyncio.to_thread(_cli, api_url, sha1, tmp_path, "list", "--count", "5")
    assert listed.returncode == 0 and listed.stdout.splitlines()[0] == "id,timestamp,value"
    assert [line.split(",")[2] for line in listed.stdout.splitlines()[1:]] == ["134", "120"]
    today = await asyncio.to_thread(_cli, api_url, sha1, tmp_path, "history", "--days-ago", "0", "--jsonl")
    assert today.returncode == 0, today.stderr
    assert sorted(json.loads(line)["sgv"] for line in today.stdout.splitlines()) == [120, 134]
    wrong = await asyncio.to_thread(_cli, api_url, "0" * 40, tmp_path, "get")
    assert wrong.returncode == 1 and "401" in wrong.stderr
