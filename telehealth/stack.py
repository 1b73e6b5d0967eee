"""`telehealth up`: embedded servers, migrations, demo users and cohort, then every service.

Services run as child processes (`python -m telehealth <service>`), as they would in
production; Ctrl-C stops the children first, then the servers, and leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from telehealth.embedded import (
    EmbeddedKafka,
    EmbeddedMqtt,
    EmbeddedPostgres,
    free_port,
    spawn,
    stop_process,
)
from telehealth.settings import Settings


@dataclass
class Servers:
    """Embedded servers for whatever the settings leave unconfigured."""

    data_dir: Path
    postgres: EmbeddedPostgres | None = None
    kafka: EmbeddedKafka | None = None
    mqtt: EmbeddedMqtt | None = None

    def start(self, settings: Settings) -> Settings:
        """Start what is missing; returns settings pointing at every server."""
        updates: dict[str, object] = {}
        if not settings.database_url:
            self.postgres = EmbeddedPostgres(self.data_dir)
            updates["database_url"] = self.postgres.start()
        if not settings.kafka_bootstrap:
            self.kafka = EmbeddedKafka(self.data_dir)
            updates["kafka_bootstrap"] = self.kafka.start()
        if not settings.mqtt_url:
            self.mqtt = EmbeddedMqtt(self.data_dir)
            updates["mqtt_url"] = self.mqtt.start()
            if not self.mqtt.supports_shared_subscriptions:
                updates["gateway_share_group"] = ""
        return settings.model_copy(update=updates)

    def stop(self) -> None:
        for server in (self.mqtt, self.kafka, self.postgres):
            if server is not None:
                server.stop()


def service_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("mqtt_url", "kafka_bootstrap", "database_url", "gateway_share_group"):
        value = getattr(settings, name)
        env[f"TELEHEALTH_{name.upper()}"] = "" if value is None else str(value)
    env["TELEHEALTH_API_PORT"] = str(settings.api_port)
    env["TELEHEALTH_API_HOST"] = settings.api_host
    return env


@dataclass
class Services:
    """Child processes running the services, logging under `<data_dir>/logs`."""

    settings: Settings
    log_dir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _launch: dict[str, tuple[tuple[str, ...], dict[str, str] | None]] = field(default_factory=dict)

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "telehealth", *args]
        proc = spawn(command, self.log_dir / f"{name}.log", env=env or service_env(self.settings))
        self.procs[name] = proc
        self._launch[name] = (args, env)
        return proc

    def restart(self, name: str) -> None:
        args, env = self._launch[name]
        self.start(name, *args, env=env)

    def dead(self) -> list[str]:
        return [name for name, proc in self.procs.items() if proc.poll() is not None]

    def stop(self, name: str | None = None) -> None:
        names = [name] if name else list(reversed(self.procs))
        for n in names:
            proc = self.procs.pop(n, None)
            if proc is not None:
                stop_process(proc)


def wait_http_ok(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError as exc:
            last = exc
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout}s: {last}")


async def _demo_accounts(url: str) -> dict[str, tuple[str, str]]:
    from simulators.cohort import DEMO_TEAM
    from telehealth.storage.db import connect
    from telehealth.storage.people import add_user, issue_token

    accounts = {}
    async with await connect(url) as conn:
        for username, role, teams in (("admin", "admin", []), ("clinician", "clinician", [DEMO_TEAM])):
            password = secrets.token_urlsafe(9)
            user = await add_user(conn, username, role, password=password, care_teams=teams)
            accounts[username] = (password, await issue_token(conn, user.id))
    return accounts


def up(
    settings: Settings, *, patients: int, speed: float, scenario: str, show_passwords: bool = False
) -> None:
    from simulators.cohort import ensure_cohort
    from telehealth.storage import migrate

    began = time.monotonic()
    data_dir = settings.data_dir.resolve()
    servers = Servers(data_dir)
    stopping = False

    def interrupt(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, interrupt)
    services: Services | None = None
    try:
        print(f"telehealth: starting embedded servers under {data_dir} ...", flush=True)
        settings = servers.start(settings)
        if settings.api_port == 8000 and not os.environ.get("TELEHEALTH_API_PORT"):
            settings = settings.model_copy(update={"api_port": _port_or_free(8000)})
        assert settings.database_url
        migrate(settings.database_url, retention=settings.retention)
        accounts = asyncio.run(_demo_accounts(settings.database_url))
        asyncio.run(ensure_cohort(settings.database_url, patients, scenario=scenario))

        services = Services(settings, data_dir / "logs")
        services.start("processor", "processor")
        services.start("gateway", "gateway")
        services.start("api", "api")
        base = f"http://{settings.api_host}:{settings.api_port}"
        wait_http_ok(f"{base}/readyz")
        services.start(
            "simulator",
            "simulate",
            "--patients",
            str(patients),
            "--speed",
            str(speed),
            "--scenario",
            scenario,
        )
        print(
            f"\ntelehealth is up in {time.monotonic() - began:.1f}s\n"
            f"  dashboard:  {base}/\n  API docs:   {base}/docs\n"
            f"  clinician:  username clinician  password {accounts['clinician'][0]}\n"
            f"              token {accounts['clinician'][1]}\n"
            + (
                f"  admin:      username admin      password {accounts['admin'][0]}\n"
                f"              token {accounts['admin'][1]}\n"
                if show_passwords
                else "  admin:      username admin      (password not shown; use --show-passwords)\n"
            )
            + f"  simulator:  {patients} patients at {speed:g}x, scenario {scenario}\n"
            f"  servers:    MQTT {settings.mqtt_url}  Kafka {settings.kafka_bootstrap}\n"
            f"  logs:       {data_dir / 'logs'}\n"
            "Press Ctrl-C to stop.",
            flush=True,
        )
        restarts: dict[str, int] = {}
        while not stopping:
            for name in services.dead():
                restarts[name] = restarts.get(name, 0) + 1
                if restarts[name] > 5:
                    print(
                        f"telehealth: {name} keeps failing; stopping. See {data_dir / 'logs'}",
                        file=sys.stderr,
                    )
                    stopping = True
                    break
                print(f"telehealth: {name} stopped unexpectedly; restarting (see logs)", file=sys.stderr)
                services.restart(name)
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        print("\ntelehealth: stopping ...", flush=True)
        if services is not None:
            services.stop()
        servers.stop()
        print("telehealth: stopped", flush=True)


def _port_or_free(port: int) -> int:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return free_port()
    return port
