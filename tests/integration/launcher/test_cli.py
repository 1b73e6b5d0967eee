"""The operator's commands, run as a user would run them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import psycopg

from telehealth.settings import Settings
from tests.commands import telehealth
from tests.factories import make_patient


async def test_users_add_prints_a_working_token(settings: Settings, api_url: str) -> None:
    done = telehealth(settings, "users", "add", "--username", "cli-admin", "--role", "admin")
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip().splitlines()[-1]
    async with httpx.AsyncClient(base_url=api_url) as http:
        me = await http.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.json()["username"] == "cli-admin" and me.json()["role"] == "admin"


async def test_devices_provision_shows_credentials_once(
    settings: Settings, db: psycopg.AsyncConnection[Any]
) -> None:
    patient = await make_patient(db, "team-cli")
    args = (
        "devices",
        "provision",
        "--device-id",
        "oxi-cli-1",
        "--patient-id",
        str(patient),
        "--kind",
        "oximeter",
    )
    first = telehealth(settings, *args)
    assert first.returncode == 0, first.stderr
    assert "MQTT username: oxi-cli-1" in first.stdout and "MQTT password (shown once): " in first.stdout
    again = telehealth(settings, *args)
    assert again.returncode != 0 and "already provisioned" in again.stderr

    revoked = telehealth(settings, "devices", "revoke", "--device-id", "oxi-cli-1")
    assert revoked.returncode == 0 and "revoked" in revoked.stdout, revoked.stderr
    cur = await db.execute("SELECT revoked_at FROM devices WHERE id = 'oxi-cli-1'")
    assert (await cur.fetchone())["revoked_at"] is not None
    twice = telehealth(settings, "devices", "revoke", "--device-id", "oxi-cli-1")
    assert twice.returncode != 0 and "no active device" in twice.stderr


def test_broker_config_is_rebuilt_from_the_device_table(settings: Settings, tmp_path: Path) -> None:
    out = tmp_path / "dynamic-security.json"
    done = telehealth(settings, "broker", "config", "--out", str(out))
    if settings.mqtt_insecure:
        assert done.returncode != 0
        return
    assert done.returncode == 0, done.stderr
    document = json.loads(out.read_text())
    users = {c["username"] for c in document["clients"]}
    assert {"telehealth-admin", "telehealth-gateway"} <= users
    assert oct(out.stat().st_mode & 0o777) == "0o600"


def test_migrate_reports_up_to_date_and_missing_settings_are_explained(settings: Settings) -> None:
    assert "up to date" in telehealth(settings, "db", "migrate").stdout
    unset = telehealth(settings.model_copy(update={"database_url": None}), "db", "migrate")
    assert unset.returncode != 0 and "TELEHEALTH_DATABASE_URL" in unset.stderr


def test_every_command_has_help(settings: Settings) -> None:
    for command in (
        ["up"],
        ["gateway"],
        ["processor"],
        ["api"],
        ["simulate"],
        ["bench"],
        ["db", "migrate"],
        ["users", "add"],
        ["devices", "provision"],
        ["devices", "revoke"],
        ["devices", "reassign"],
        ["broker", "config"],
        ["broker", "certs"],
    ):
        done = telehealth(settings, *command, "--help")
        assert done.returncode == 0 and "usage: telehealth" in done.stdout, command
