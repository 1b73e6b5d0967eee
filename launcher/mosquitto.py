"""The embedded MQTT broker: Mosquitto when on PATH (Debian's package, with its
dynamic-security plugin), else `amqtt`."""

from __future__ import annotations

import glob
import json
import logging
import os
import pwd
import shutil
import stat
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from launcher.embedded import (
    PORT_ATTEMPTS,
    ServerExited,
    free_port,
    log_size,
    spawn,
    stop_process,
    wait_for_port,
)
from telehealth.broker.dynsec import DeviceLogin, config_document
from telehealth.broker.logins import ServiceLogins
from telehealth.tls import ensure_server_certificate

log = logging.getLogger(__name__)

#: The broker refuses larger messages outright; between the payload limit (64 KiB) and this
#: the gateway still dead-letters them with a reason.
BROKER_MESSAGE_LIMIT = 256 * 1024

#: Mosquitto writes its in-memory state (queued QoS 1 messages, sessions) this often, in
#: seconds, and on a clean stop. A kill -9 loses at most what changed since the last save
#: (docs/broker.md).
AUTOSAVE_S = 2


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
            log_from = log_size(self.log_path)
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
