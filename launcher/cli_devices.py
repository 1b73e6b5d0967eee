"""`telehealth devices ...` and `telehealth broker ...`: device logins in the database and the
broker together, and the broker's own files."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from psycopg import AsyncConnection

from launcher.cli_support import T, with_connection
from telehealth.errors import TelehealthError
from telehealth.settings import get_settings

if TYPE_CHECKING:
    from telehealth.broker.admin import DeviceLogins
    from telehealth.storage.devices import Credentials


def _with_logins(work: Callable[[AsyncConnection[Any], DeviceLogins], Awaitable[T]]) -> T:
    """Admin work that changes device logins: the database and the broker together."""
    from telehealth.broker.admin import device_logins

    async def go(conn: AsyncConnection[Any]) -> T:
        async with device_logins(get_settings()) as logins:
            return await work(conn, logins)

    try:
        return with_connection(go)
    except TelehealthError as exc:
        sys.exit(f"telehealth: {exc}")


def _print_credentials(creds: Credentials) -> None:
    """Everything a device needs to connect, and a line to try it with."""
    import json
    from urllib.parse import urlsplit

    from telehealth.topics import readings_topic

    settings = get_settings()
    topic = readings_topic(creds.device_id)
    print(f"device {creds.device_id} for patient {creds.patient_id}")
    print(f"MQTT username: {creds.username}\nMQTT password (shown once): {creds.password}")
    print(f"MQTT client id: {creds.device_id} (must equal the device id; any other is refused)")
    print(f"publish readings to: {topic} (QoS 1)")
    if not settings.mqtt_device_url:
        print("broker: set TELEHEALTH_MQTT_DEVICE_URL to print the devices' address")
        return
    url = urlsplit(settings.mqtt_device_url)
    tls = url.scheme in ("mqtts", "ssl", "tls")
    host, port = url.hostname or "localhost", url.port or (8883 if tls else 1883)
    ca = settings.mqtt_ca_file
    print(f"broker: {host} port {port}, " + (f"TLS (CA file {ca})" if tls else "no TLS"))
    tls_args = f" --cafile {ca}" if tls and ca else (" --tls-use-os-certs" if tls else "")
    body = json.dumps(
        {
            "device_id": creds.device_id,
            "seq": 1,
            "measured_at": "MEASURED_AT",
            "observations": [{"code": "glucose", "value": 6.1, "unit": "mmol/L"}],
        }
    )
    # the reading's time is the shell's: a quoted JSON body with `date` spliced in
    example = "'" + body.replace("MEASURED_AT", "'\"$(date -u +%FT%TZ)\"'") + "'"
    print(
        f"try it: mosquitto_pub -h {host} -p {port}{tls_args} -q 1 -i {creds.device_id}"
        f" -u {creds.username} -P '<password>' -t {topic} -m {example}"
    )


def cmd_devices_provision(args: argparse.Namespace) -> None:
    from telehealth.provisioning import provision_device

    if args.kind == "uploader":
        from launcher import cli_nightscout

        return cli_nightscout.provision(args)

    creds = _with_logins(
        lambda conn, logins: provision_device(
            conn, logins, device_id=args.device_id, patient_id=args.patient_id, kind=args.kind
        )
    )
    _print_credentials(creds)


def cmd_devices_revoke(args: argparse.Namespace) -> None:
    from telehealth.provisioning import revoke_device

    if not _with_logins(lambda conn, logins: revoke_device(conn, logins, args.device_id)):
        sys.exit(f"telehealth: no active device {args.device_id!r}")
    print(f"device {args.device_id} revoked: its broker login is disabled and its connection dropped")


def cmd_devices_reassign(args: argparse.Namespace) -> None:
    from launcher import cli_nightscout
    from telehealth.provisioning import reassign_device

    if cli_nightscout.reassign(args):
        return

    try:
        creds = _with_logins(
            lambda conn, logins: reassign_device(conn, logins, args.device_id, args.patient_id)
        )
    except LookupError as exc:
        sys.exit(f"telehealth: {exc}")
    _print_credentials(creds)


def cmd_broker_config(args: argparse.Namespace) -> None:
    """Write Mosquitto's dynamic-security file from the device table (before the broker starts)."""
    import json

    from telehealth.broker.dynsec import ADMIN_USER, GATEWAY_USER, RELAY_USER, config_document, hash_password
    from telehealth.storage.devices import broker_logins

    settings = get_settings()
    hashes = {
        user: hash_password(secret.get_secret_value())
        for user, secret in (
            (ADMIN_USER, settings.mqtt_admin_password),
            (GATEWAY_USER, settings.mqtt_gateway_password),
            (RELAY_USER, settings.mqtt_relay_password),
        )
        if secret is not None
    }
    if ADMIN_USER not in hashes or GATEWAY_USER not in hashes:
        sys.exit("telehealth: set TELEHEALTH_MQTT_ADMIN_PASSWORD and TELEHEALTH_MQTT_GATEWAY_PASSWORD")
    document, skipped = config_document(hashes, with_connection(broker_logins))
    args.out.write_text(json.dumps(document, indent=1))
    args.out.chmod(0o600)
    print(f"wrote {args.out}: {len(document['clients'])} logins", end="")
    print(f"; {len(skipped)} device(s) need a new secret first" if skipped else "")


def cmd_broker_certs(args: argparse.Namespace) -> None:
    """A local CA and the broker's server certificate, kept while valid for the hosts."""
    from telehealth.tls import ensure_server_certificate

    made = ensure_server_certificate(args.dir, args.host)
    print(f"broker certificate {made.cert_file} (key {made.key_file}); devices trust {made.ca_file}")
