"""`telehealth up` from a clean directory: ready, data flowing, and a clean stop on Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from launcher.embedded import free_port


def start_up(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], int, dict[str, str], list[str]]:
    """`telehealth up` as a user starts it, read until it says it is up (or exits)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEHEALTH_")}
    env |= {"TELEHEALTH_DATA_DIR": str(tmp_path / "data"), "TELEHEALTH_API_PORT": str(port)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "launcher", "up", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=tmp_path,
        text=True,
    )
    output: list[str] = []
    deadline = time.monotonic() + 90
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        output.append(line)
        if "Press Ctrl-C" in line or (not line and proc.poll() is not None):
            break
    return proc, port, env, output


def test_up_runs_the_whole_system_and_stops_cleanly(tmp_path: Path) -> None:
    proc, port, env, output = start_up(tmp_path, "--patients", "3", "--speed", "600")
    try:
        text = "".join(output)
        assert "telehealth is up" in text, text
        token = re.search(r"clinician:.*\n\s+token (\S+)", text)
        assert token, text
        # The admin's password and token stay off stdout unless --show-passwords is given.
        assert "admin      (password not shown" in text and len(re.findall(r"\btoken \S", text)) == 1, text
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 6  # mqtt, kafka, gateway, processor, api, simulator

        headers = {"Authorization": f"Bearer {token.group(1)}"}
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/readyz").status_code == 200
        deadline = time.monotonic() + 60
        patients: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            patients = httpx.get(f"{base}/api/v1/patients", headers=headers).json()
            if len(patients) == 3 and all(p["latest"] for p in patients):
                break
            time.sleep(0.5)
        assert len(patients) == 3 and all(p["latest"] for p in patients), patients
        # The care team a new clinician must join to see them is printed, with the command.
        team = re.search(r"care team:\s+(\S+) .*\n\s+telehealth users add .*--care-team (\S+)\)", text)
        assert team and team.group(1) == team.group(2), text
        assert {p["care_team"] for p in patients} == {team.group(1)}

        # Admin commands with no URLs configured find this stack through its data dir.
        stack = tmp_path / "data" / "stack.json"
        assert stack.stat().st_mode & 0o777 == 0o600
        admin = [sys.executable, "-m", "launcher"]
        added = subprocess.run(
            [*admin, "users", "add", "--username", "nurse", "--role", "clinician", "--care-team", "demo"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert added.returncode == 0, added.stderr
        nurse = {"Authorization": f"Bearer {added.stdout.split()[-1]}"}
        assert httpx.get(f"{base}/api/v1/auth/me", headers=nurse).json()["username"] == "nurse"
        provisioned = subprocess.run(
            [
                *admin,
                "devices",
                "provision",
                "--device-id",
                "cgm-up-cli",
                "--kind",
                "cgm",
                "--patient-id",
                str(patients[0]["id"]),
            ],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert provisioned.returncode == 0 and "MQTT password" in provisioned.stdout, provisioned.stderr
        # ... and `up` says where its metrics are; the gateway's have counted readings.
        gateway_metrics = re.search(r"(http://\S+/metrics) \(gateway\)", text)
        assert gateway_metrics, text
        scraped = httpx.get(gateway_metrics.group(1)).text
        forwarded = re.search(
            r'telehealth_gateway_records_forwarded_total\{topic="telehealth.readings"\} (\S+)', scraped
        )
        assert forwarded and float(forwarded.group(1)) > 0, scraped
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, "".join(output) + rest
    assert "telehealth: stopped" in rest
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert not (tmp_path / "data" / "postgres" / "postmaster.pid").exists()
    assert not (tmp_path / "data" / "stack.json").exists(), "removed on stop"


def test_up_with_no_simulated_patients_simply_runs(tmp_path: Path) -> None:
    """No simulator is started, so there is nothing to exit and nothing to treat as a crash."""
    proc, port, _, output = start_up(tmp_path, "--patients", "0")
    try:
        assert "telehealth is up" in "".join(output), "".join(output)
        names = [" ".join(c.cmdline()) for c in psutil.Process(proc.pid).children(recursive=True)]
        assert not [n for n in names if " simulate" in n], names
        # the old supervision restarted the exiting simulator five times, 0.5 s apart, then
        # stopped everything: watch well past that
        for _ in range(20):
            assert proc.poll() is None, "".join(output)
            assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
            time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, "".join(output) + rest
    assert "stopped unexpectedly" not in rest and "keeps failing" not in rest, rest


def test_a_killed_up_leaves_no_server_behind_once_started_again(tmp_path: Path) -> None:
    """kill -9 gives `up` no chance to clean up. Its children must die with it (Mosquitto
    included: it used to drop privileges by itself, which cleared its parent-death signal);
    PostgreSQL is a daemon, so the next `up` in the same directory adopts it and stops it."""
    proc, _, _, output = start_up(tmp_path, "--patients", "0")
    assert "telehealth is up" in "".join(output), "".join(output)
    children = psutil.Process(proc.pid).children(recursive=True)
    assert any("mosquitto" in " ".join(c.cmdline()) for c in children) or not _has_mosquitto(), children
    postmaster = int((tmp_path / "data" / "postgres" / "postmaster.pid").read_text().split()[0])
    proc.kill()
    proc.communicate(timeout=30)

    def alive(p: psutil.Process) -> bool:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE

    deadline = time.monotonic() + 15
    while [c for c in children if alive(c)] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [c.cmdline() for c in children if alive(c)], "outlived a killed up"

    again, _, _, output = start_up(tmp_path, "--patients", "0")
    try:
        assert "telehealth is up" in "".join(output), "".join(output)
    finally:
        again.send_signal(signal.SIGINT)
        rest, _ = again.communicate(timeout=60)
    assert again.returncode == 0, "".join(output) + rest
    assert not psutil.pid_exists(postmaster) or not alive(psutil.Process(postmaster)), "left running"
    assert not (tmp_path / "data" / "postgres" / "postmaster.pid").exists()


def _has_mosquitto() -> bool:
    import shutil

    return bool(shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists())
