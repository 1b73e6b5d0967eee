"""The admin CLI cannot hurt: accounts are created or changed only on purpose, passwords
follow the policy, and every mistake gets one line that says what to do."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import httpx
import psycopg
import pytest

from telehealth.settings import Settings
from tests.commands import telehealth
from tests.factories import make_patient

STRONG = "quiet-harbour-lantern-47"


def one_line_error(done: Any) -> str:
    """The command failed with a single line on stderr and no traceback."""
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("telehealth: "), lines[0]
    return str(lines[0])


async def me(api_url: str, token: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=api_url) as http:
        return await http.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})


async def test_add_refuses_an_existing_user_and_changes_nothing(
    settings: Settings, api_url: str, db: psycopg.AsyncConnection[Any]
) -> None:
    name = f"cli-clin-{uuid4().hex[:6]}"
    first = telehealth(
        settings,
        "users",
        "add",
        "--username",
        name,
        "--role",
        "clinician",
        "--care-team",
        "ward-a",
        "--password",
        STRONG,
    )
    assert first.returncode == 0, first.stderr
    token = first.stdout.strip().splitlines()[-1]

    again = telehealth(
        settings, "users", "add", "--username", name, "--role", "admin", "--password", STRONG + "x"
    )
    assert "already exists" in one_line_error(again) and "users update" in again.stderr
    cur = await db.execute("SELECT role, care_teams FROM users WHERE username = %s", (name,))
    row = await cur.fetchone()
    assert row is not None and (row["role"], row["care_teams"]) == ("clinician", ["ward-a"])
    assert (await me(api_url, token)).status_code == 200, "the existing token still works"


async def test_update_says_what_changed_and_a_new_role_revokes_tokens(
    settings: Settings, api_url: str
) -> None:
    name = f"cli-upd-{uuid4().hex[:6]}"
    first = telehealth(
        settings, "users", "add", "--username", name, "--role", "clinician", "--care-team", "ward-a"
    )
    assert first.returncode == 0, first.stderr
    token = first.stdout.strip().splitlines()[-1]

    teams = telehealth(
        settings, "users", "update", "--username", name, "--care-team", "ward-b", "--care-team", "ward-c"
    )
    assert teams.returncode == 0, teams.stderr
    assert "care_teams: ward-a -> ward-b, ward-c" in teams.stdout
    assert (await me(api_url, token)).status_code == 200, "a team change keeps the session"

    role = telehealth(settings, "users", "update", "--username", name, "--role", "admin")
    assert role.returncode == 0, role.stderr
    assert "role: clinician -> admin" in role.stdout and "revoked" in role.stdout
    assert (await me(api_url, token)).status_code == 401

    same = telehealth(settings, "users", "update", "--username", name, "--role", "admin")
    assert same.returncode == 0 and "nothing to change" in same.stdout
    missing = telehealth(
        settings, "users", "update", "--username", f"nobody-{uuid4().hex[:6]}", "--role", "admin"
    )
    assert "no user" in one_line_error(missing)


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("x", "at least 12 characters"),
        ("password1234", "too easy to guess"),
        ("aaaaaaaaaaaaaaaa", "too easy"),
    ],
)
def test_weak_passwords_are_refused_everywhere(settings: Settings, password: str, why: str) -> None:
    name = f"cli-pw-{uuid4().hex[:6]}"
    add = telehealth(settings, "users", "add", "--username", name, "--role", "admin", "--password", password)
    assert why in one_line_error(add)
    ok = telehealth(settings, "users", "add", "--username", name, "--role", "admin", "--password", STRONG)
    assert ok.returncode == 0, ok.stderr
    change = telehealth(settings, "users", "set-password", "--username", name, "--password", password)
    assert why in one_line_error(change)


async def test_each_role_gets_what_it_needs(settings: Settings, db: psycopg.AsyncConnection[Any]) -> None:
    name = f"cli-role-{uuid4().hex[:6]}"
    assert "--care-team" in one_line_error(
        telehealth(settings, "users", "add", "--username", name, "--role", "clinician")
    )
    assert "--patient-id" in one_line_error(
        telehealth(settings, "users", "add", "--username", name, "--role", "patient")
    )
    unknown = telehealth(
        settings, "users", "add", "--username", name, "--role", "patient", "--patient-id", str(uuid4())
    )
    assert "no patient" in one_line_error(unknown)
    patient = await make_patient(db, "team-cli")
    ok = telehealth(
        settings, "users", "add", "--username", name, "--role", "patient", "--patient-id", str(patient)
    )
    assert ok.returncode == 0, ok.stderr


def test_mistakes_are_one_line_never_a_traceback(settings: Settings) -> None:
    unknown_patient = str(uuid4())
    cases = [
        (
            "devices",
            "provision",
            "--device-id",
            f"cgm-{uuid4().hex[:6]}",
            "--patient-id",
            unknown_patient,
            "--kind",
            "cgm",
        ),
        ("devices", "reassign", "--device-id", f"nope-{uuid4().hex[:6]}", "--patient-id", unknown_patient),
        ("devices", "revoke", "--device-id", f"nope-{uuid4().hex[:6]}"),
        ("users", "set-password", "--username", f"nobody-{uuid4().hex[:6]}", "--password", STRONG),
        ("users", "revoke-tokens", "--username", f"nobody-{uuid4().hex[:6]}"),
        (
            "users",
            "add",
            "--username",
            f"r-{uuid4().hex[:6]}",
            "--role",
            "researcher",
            "--project-id",
            "987654",
        ),
        ("audit", "verify", "--expect", "not-a-head"),
    ]
    for args in cases:
        one_line_error(telehealth(settings, *args))


def test_an_unreachable_database_is_explained(settings: Settings) -> None:
    closed = settings.model_copy(
        update={"database_url": "postgresql://nobody@127.0.0.1:9/none?connect_timeout=2"}
    )
    line = one_line_error(telehealth(closed, "users", "revoke-tokens", "--username", "someone"))
    assert "cannot reach the database" in line and "TELEHEALTH_DATABASE_URL" in line


async def test_provision_prints_how_to_connect(settings: Settings, db: psycopg.AsyncConnection[Any]) -> None:
    patient = await make_patient(db, "team-cli")
    device = f"cgm-how-{uuid4().hex[:6]}"
    done = telehealth(
        settings,
        "devices",
        "provision",
        "--device-id",
        device,
        "--patient-id",
        str(patient),
        "--kind",
        "cgm",
        env={
            "TELEHEALTH_MQTT_DEVICE_URL": "mqtts://broker.example:8883",
            "TELEHEALTH_MQTT_CA_FILE": "/etc/ca.pem",
        },
    )
    if settings.mqtt_insecure:  # no broker logins to create without the dynamic-security plugin
        assert done.returncode != 0
        return
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert f"MQTT client id: {device}" in out
    assert f"publish readings to: telehealth/v1/devices/{device}/readings" in out
    assert "broker: broker.example port 8883, TLS (CA file /etc/ca.pem)" in out
    assert f"mosquitto_pub -h broker.example -p 8883 --cafile /etc/ca.pem -q 1 -i {device} -u {device}" in out
