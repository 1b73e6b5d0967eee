"""`telehealth up`: embedded servers, migrations, demo users and cohort, then every service.

Services run as child processes (`python -m launcher <service>`), as they would in
production; Ctrl-C stops the children first, then the servers, and leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr

from launcher.embedded import EmbeddedKafka, EmbeddedPostgres, free_port, spawn, stop_process
from launcher.mosquitto import EmbeddedMqtt
from launcher.supervise import Supervisor
from telehealth import stackfile
from telehealth.broker.dynsec import DeviceLogin
from telehealth.broker.logins import load_or_create
from telehealth.security import url_safe_secret
from telehealth.settings import Settings
from telehealth.storage import migrate

# Tansu accepts a session this short (Apache Kafka's default minimum is 6 s). Tansu holds every
# JoinGroup for a while that grows with the session (1 s at 1-2 s, 2 s at 3 s), and a
# restarted processor that joins while its dead predecessor still leads the group waits for
# that session to expire and joins again: 2 + 3 + 2 s at a 3 s session, which made a kill -9
# resume take 7-8 s; at 1 s it takes 1.6-1.7 s (docs/architecture.md).
EMBEDDED_SESSION_TIMEOUT_MS = 1000


@dataclass
class Servers:
    """Embedded servers for whatever the settings leave unconfigured."""

    data_dir: Path
    postgres: EmbeddedPostgres | None = None
    kafka: EmbeddedKafka | None = None
    mqtt: EmbeddedMqtt | None = None

    def start(self, settings: Settings, *, allow_insecure_broker: bool = False) -> Settings:
        """Start what is missing (the database first: the broker's logins come from it);
        returns settings pointing at every server, with the services' broker logins."""
        updates: dict[str, object] = {}
        if not settings.database_url:
            self.postgres = EmbeddedPostgres(self.data_dir, timescaledb=settings.timescaledb)
            updates["database_url"] = self.postgres.start()
        database_url = str(updates.get("database_url") or settings.database_url)
        migrate(database_url, retention=settings.retention)
        if not settings.kafka_bootstrap:
            self.kafka = EmbeddedKafka(self.data_dir)
            updates["kafka_bootstrap"] = self.kafka.start()
            if "TELEHEALTH_PROCESSOR_SESSION_TIMEOUT_MS" not in os.environ:
                updates["processor_session_timeout_ms"] = EMBEDDED_SESSION_TIMEOUT_MS
        if not settings.mqtt_url:
            self.mqtt = EmbeddedMqtt(self.data_dir)
            if not self.mqtt.secure and not allow_insecure_broker:
                raise SystemExit(
                    "telehealth: only the pure-Python MQTT broker (amqtt) is available, and it cannot"
                    " enforce per-device logins and topic rules. Install Mosquitto (apt-get install"
                    " mosquitto), point TELEHEALTH_MQTT_URL at a locked broker, or pass"
                    " --insecure-broker to run it open anyway."
                )
            updates |= start_broker(self.mqtt, database_url)
        return settings.model_copy(update=updates)

    def restart_broker(self, database_url: str) -> None:
        """Restart the embedded broker, same ports and service logins, with every device login
        the database holds now: thousands of devices in one document instead of thousands of
        admin commands (each of which makes Mosquitto rewrite its whole login file)."""
        assert self.mqtt is not None
        self.mqtt.stop()
        start_broker(self.mqtt, database_url)

    def dead(self) -> list[str]:
        """The embedded servers that stopped without being asked (crashed or killed)."""
        found = []
        if self.postgres is not None and not self.postgres.alive():
            found.append("postgres")
        for name, server in (("kafka", self.kafka), ("mqtt", self.mqtt)):
            if server is not None and (server.proc is None or server.proc.poll() is not None):
                found.append(name)
        return found

    def restart(self, name: str, database_url: str) -> None:
        """Start one server again, on its old address: the services reconnect by themselves.
        The MQTT broker reads its saved queue back; the Kafka broker starts empty with a new
        cluster id, and the gateway replays its spool into it."""
        if name == "postgres":
            assert self.postgres is not None
            self.postgres.restart()
        elif name == "kafka":
            assert self.kafka is not None
            self.kafka.stop()
            self.kafka.start()
        elif name == "mqtt":
            self.restart_broker(database_url)
        else:
            raise ValueError(f"no embedded server {name!r}")

    def stop(self) -> None:
        for server in (self.mqtt, self.kafka, self.postgres):
            if server is not None:
                server.stop()


def start_broker(mqtt: EmbeddedMqtt, database_url: str) -> dict[str, object]:
    """Start the embedded broker with every device login the database holds; returns the
    settings the services need to reach it (each then gets only its own login)."""
    if not mqtt.secure:
        mqtt.start()
        return {"mqtt_url": mqtt.url, "mqtt_insecure": True, "gateway_share_group": ""}
    logins = load_or_create(mqtt.dir / "service-logins.json")
    devices = asyncio.run(_device_logins(database_url))
    mqtt.start(logins, devices)
    return {
        "mqtt_url": mqtt.url,
        "mqtt_device_url": mqtt.tls_url,
        "mqtt_ca_file": mqtt.ca_file,
        "mqtt_admin_password": SecretStr(logins.admin),
        "mqtt_gateway_password": SecretStr(logins.gateway),
        "mqtt_relay_password": SecretStr(logins.relay),
    }


async def _device_logins(database_url: str) -> list[DeviceLogin]:
    from telehealth.storage.db import connect
    from telehealth.storage.devices import broker_logins

    async with await connect(database_url) as conn:
        return await broker_logins(conn)


#: Which broker secrets each command gets: every service holds only its own login.
_BROKER_SECRETS = {
    "gateway": ("mqtt_gateway_password",),
    "api": ("mqtt_admin_password",),
    "simulate": ("mqtt_admin_password", "mqtt_relay_password"),
}
_SHARED = (
    "mqtt_url",
    "mqtt_device_url",
    "mqtt_ca_file",
    "mqtt_insecure",
    "kafka_bootstrap",
    "database_url",
    "gateway_share_group",
    "processor_session_timeout_ms",
    "api_forwarded_allow_ips",
    "data_dir",
)
_SECRETS = ("mqtt_gateway_password", "mqtt_admin_password", "mqtt_relay_password")


def service_env(settings: Settings, command: str) -> dict[str, str]:
    """The environment for one service's process: where the servers are, and its own login."""
    env = {
        k: v for k, v in os.environ.items() if k.upper().removeprefix("TELEHEALTH_").lower() not in _SECRETS
    }
    for name in _SHARED:
        value = getattr(settings, name)
        env[f"TELEHEALTH_{name.upper()}"] = "" if value is None else str(value)
    for name in _BROKER_SECRETS.get(command, ()):
        secret = getattr(settings, name)
        if secret is not None:
            env[f"TELEHEALTH_{name.upper()}"] = secret.get_secret_value()
    env["TELEHEALTH_API_PORT"] = str(settings.api_port)
    env["TELEHEALTH_API_HOST"] = settings.api_host
    return env


@dataclass
class Services:
    """Child processes running the services, logging under `<data_dir>/logs`."""

    settings: Settings
    log_dir: Path
    #: services (by name) given a Prometheus listener on this port
    metrics_ports: dict[str, int] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _launch: dict[str, tuple[tuple[str, ...], dict[str, str] | None]] = field(default_factory=dict)

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "launcher", *args]
        env = env or service_env(self.settings, args[0])
        if name in self.metrics_ports:
            env = {**env, "TELEHEALTH_METRICS_PORT": str(self.metrics_ports[name])}
        proc = spawn(command, self.log_dir / f"{name}.log", env=env)
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
        except urllib.error.HTTPError as exc:  # e.g. 503 while services start: close its socket
            exc.close()
            last = exc
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
            password = url_safe_secret(9)
            user = await add_user(conn, username, role, password=password, care_teams=teams)
            accounts[username] = (password, await issue_token(conn, user.id))
    return accounts


def up(
    settings: Settings,
    *,
    patients: int,
    speed: float,
    scenario: str,
    insecure_broker: bool = False,
    show_passwords: bool = False,
) -> None:
    from simulators.cohort import DEMO_TEAM

    began = time.monotonic()
    data_dir = settings.data_dir.resolve()
    if (running := stackfile.read_live(settings)) is not None:
        raise SystemExit(f"telehealth: `up` already runs from {data_dir} (pid {running['pid']})")
    settings = settings.model_copy(update={"data_dir": data_dir})
    servers = Servers(data_dir)
    stopping = False

    def interrupt(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, interrupt)
    # Ctrl-C stops `up` however it was started: a script's `telehealth up &` starts it with
    # SIGINT ignored, and Python then never raises KeyboardInterrupt.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    services: Services | None = None
    try:
        print(f"telehealth: starting embedded servers under {data_dir} ...", flush=True)
        settings = servers.start(settings, allow_insecure_broker=insecure_broker)
        if settings.mqtt_insecure:
            print(
                "telehealth: WARNING: the MQTT broker runs OPEN (--insecure-broker): any client can"
                " publish or read any device's stream. Do not use it with real patients.",
                file=sys.stderr,
                flush=True,
            )
        if settings.api_port == 8000 and not os.environ.get("TELEHEALTH_API_PORT"):
            settings = settings.model_copy(update={"api_port": _port_or_free(8000)})
        assert settings.database_url
        accounts = asyncio.run(_demo_accounts(settings.database_url))

        gateway_metrics = free_port()
        metrics = {"gateway": gateway_metrics, "processor": free_port(gateway_metrics)}
        services = Services(settings, data_dir / "logs", metrics_ports=metrics)
        services.start("processor", "processor")
        services.start("gateway", "gateway")
        services.start("api", "api")
        base = f"http://{settings.api_host}:{settings.api_port}"
        wait_http_ok(f"{base}/readyz")
        if patients > 0:  # with no simulated patients there is no simulator to supervise
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
        stack_file = stackfile.write(settings, api_url=base, metrics=metrics)
        print(
            f"\ntelehealth is up in {time.monotonic() - began:.1f}s\n"
            f"  dashboard:  {base}/\n  API docs:   {base}/docs\n"
            f"  clinician:  username clinician  password {accounts['clinician'][0]}\n"
            f"              token {accounts['clinician'][1]}\n"
            f"  care team:  {DEMO_TEAM} (the simulated patients' team: a new clinician joins it with\n"
            f"              telehealth users add --username NAME --role clinician --care-team {DEMO_TEAM})\n"
            + (
                f"  admin:      username admin      password {accounts['admin'][0]}\n"
                f"              token {accounts['admin'][1]}\n"
                if show_passwords
                else "  admin:      username admin      (password not shown; use --show-passwords)\n"
            )
            + f"  simulator:  {patients} patients at {speed:g}x, scenario {scenario}\n"
            f"  servers:    MQTT {settings.mqtt_url} (services)  Kafka {settings.kafka_bootstrap}\n"
            + (
                f"  devices:    {settings.mqtt_device_url} (TLS; CA certificate {settings.mqtt_ca_file})\n"
                if settings.mqtt_device_url
                else ""
            )
            + f"  metrics:    {base}/metrics (api), "
            + ", ".join(f"http://127.0.0.1:{port}/metrics ({name})" for name, port in metrics.items())
            + f"\n  database:   {settings.database_url}\n"
            f"  logs:       {data_dir / 'logs'}\n"
            f"  admin commands (users add, devices provision, ...) find this stack through {stack_file}\n"
            "Press Ctrl-C to stop.",
            flush=True,
        )
        supervisor = Supervisor()  # backoff and a restart budget; never stops the rest
        while not stopping:
            supervise(supervisor, servers, services, settings.database_url, data_dir / "logs")
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        # A second Ctrl-C must not cut the clean-up short: PostgreSQL is a daemon, not our
        # child, so an interrupted stop would leave it running until the next `up` adopts it.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print("\ntelehealth: stopping ...", flush=True)
        stackfile.remove(settings)
        if services is not None:
            services.stop()
        servers.stop()
        print("telehealth: stopped", flush=True)


#: servers restarted before the services: they come back on their old addresses
SERVERS = ("postgres", "kafka", "mqtt")


def supervise(
    supervisor: Supervisor, servers: Servers, services: Services, database_url: str, logs: Path
) -> None:
    """One round: restart (with the supervisor's backoff) whatever stopped, servers and
    services alike. A server that fails to start counts as a crash and is tried again later;
    meanwhile `/readyz` reports it and the services hold their work back."""
    restart, notes = supervisor.tick(servers.dead() + services.dead(), time.monotonic())
    for note in notes:
        print(f"telehealth: {note}; logs in {logs}", file=sys.stderr, flush=True)
    for name in sorted(restart, key=lambda n: (n not in SERVERS, n)):
        if name in SERVERS:
            try:
                servers.restart(name, database_url)
            except Exception as exc:  # e.g. the broker's logins need the database, also away
                print(f"telehealth: {name} did not start again: {exc}", file=sys.stderr, flush=True)
            else:
                print(f"telehealth: {name} started again", file=sys.stderr, flush=True)
        else:
            services.restart(name)


def _port_or_free(port: int) -> int:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return free_port()
    return port
