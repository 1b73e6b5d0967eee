"""The `telehealth` command. Each subcommand has --help."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import UUID

from launcher import settings_doc
from launcher.cli_devices import (
    cmd_broker_certs,
    cmd_broker_config,
    cmd_devices_provision,
    cmd_devices_reassign,
    cmd_devices_revoke,
)
from launcher.cli_support import database_url
from telehealth import logs
from telehealth.errors import TelehealthError
from telehealth.research import pull as research_pull
from telehealth.settings import Settings, get_settings

if TYPE_CHECKING:
    from telehealth.mqtt import MqttAddress


#: CPython's cyclic collector runs after every 700 net allocations by default: about 700 times a
#: second in the processor at 5,000 readings/s, 10 % of its time (measured with gc.callbacks),
#: though almost nothing it allocates is in a cycle (refcounting frees it). 10,000 brought that
#: to about 1 %, in pauses of 1-6 ms.
GC_THRESHOLDS = (10_000, 10, 10)


def tune_gc() -> None:
    """Collect cycles less often, and never rescan what start-up built (it lives as long as
    the process): for the services that handle every reading."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def run_until_signal(service: str, main: Callable[[Settings, asyncio.Event], Awaitable[None]]) -> None:
    """Run a service coroutine until SIGINT or SIGTERM, then let it stop cleanly."""
    logs.configure(service)
    tune_gc()

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await main(get_settings(), stop)

    with asyncio.Runner(loop_factory=loop_factory()) as run:
        run.run(runner())


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop where it is installed (less CPU per reading, decision 0052), else None:
    asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def cmd_gateway(_: argparse.Namespace) -> None:
    from gateway.service import serve

    run_until_signal("gateway", serve)


def cmd_processor(_: argparse.Namespace) -> None:
    from processor.service import serve

    run_until_signal("processor", serve)


def cmd_api(args: argparse.Namespace) -> None:
    import uvicorn

    from dashboard_api.app import create_app

    logs.configure("api")
    settings = get_settings()
    settings.require("database_url")
    uvicorn.run(
        create_app(settings),
        host=args.host or settings.api_host,
        port=args.port or settings.api_port,
        log_level="warning",
        server_header=False,
        # The client address drives the per-address login limit: believe X-Forwarded-For only
        # from proxies the operator named (uvicorn's own default trusts any local process).
        proxy_headers=bool(settings.api_forwarded_allow_ips),
        forwarded_allow_ips=settings.api_forwarded_allow_ips or None,
    )


def cmd_migrate(_: argparse.Namespace) -> None:
    from telehealth.storage import migrate

    logs.configure("migrate")
    try:
        applied = migrate(database_url(), retention=get_settings().retention)
    except TelehealthError as exc:
        sys.exit(f"telehealth: {exc}")
    print("applied: " + ", ".join(applied) if applied else "schema is up to date")


def _simulator_address(settings: Settings) -> MqttAddress:
    """Devices connect where real ones would (TLS when the broker offers it); hubs, if asked
    for, share the relay login."""
    from telehealth.broker.dynsec import RELAY_USER
    from telehealth.mqtt import parse_mqtt_url

    url = settings.mqtt_device_url or settings.mqtt_url
    assert url
    address = parse_mqtt_url(url, str(settings.mqtt_ca_file) if settings.mqtt_ca_file else None)
    if settings.mqtt_relay_password is not None:
        address = address.login(RELAY_USER, settings.mqtt_relay_password.get_secret_value())
    return address


def cmd_simulate(args: argparse.Namespace) -> None:
    from simulators.cohort import ensure_cohort
    from simulators.report import reconcile_settled
    from simulators.run import simulate
    from telehealth.broker.admin import device_logins

    logs.configure("simulator")
    settings = get_settings()
    settings.require("mqtt_url", "database_url")

    async def go() -> None:
        assert settings.database_url and settings.mqtt_url
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with device_logins(settings) as logins:
            cohort = await ensure_cohort(
                settings.database_url, args.patients, logins=logins, scenario=args.scenario
            )
        report = await simulate(
            cohort,
            _simulator_address(settings),
            scenario=args.scenario,
            speed=args.speed,
            rate=args.rate,
            connections=args.connections,
            duration_s=args.duration,
            seed=args.seed,
            stop=stop,
        )
        print(report.summary(), flush=True)
        if args.report:
            report.write(args.report)
        if args.reconcile:
            result = await reconcile_settled(settings.database_url, report)
            print(result.summary())
            if not result.exact:
                raise SystemExit(1)

    asyncio.run(go())


def cmd_up(args: argparse.Namespace) -> None:
    from launcher.stack import up

    settings = Settings()  # not get_settings(): `up` starts what is missing, it never joins a running stack
    if args.timescaledb is not None:
        settings = settings.model_copy(update={"timescaledb": args.timescaledb})
    up(
        settings,
        patients=args.patients,
        speed=args.speed,
        scenario=args.scenario,
        insecure_broker=args.insecure_broker,
        show_passwords=args.show_passwords,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="telehealth", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("up", help="start the whole system with embedded servers and a demo cohort")
    p.add_argument("--patients", type=int, default=20, help="simulated patients (default 20)")
    p.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="simulated time speed-up (default 1: true rates; faster makes every trend that much"
        " steeper, so forecasts see falls that physiology does not allow)",
    )
    p.add_argument("--scenario", default="hypo", help="simulator scenario (default hypo)")
    p.add_argument(
        "--insecure-broker",
        action="store_true",
        help="allow the pure-Python MQTT broker, which runs without logins or topic rules",
    )
    p.add_argument("--show-passwords", action="store_true", help="also print the admin password and token")
    p.add_argument(
        "--timescaledb",
        type=Path,
        metavar="BUILD",
        help="run the embedded PostgreSQL with this TimescaleDB build (directory or .tar.xz;"
        " setting TELEHEALTH_TIMESCALEDB); a data dir first migrated without it stays plain",
    )
    p.set_defaults(func=cmd_up)

    sub.add_parser("gateway", help="run the MQTT -> Kafka gateway").set_defaults(func=cmd_gateway)
    sub.add_parser("processor", help="run the stream processor").set_defaults(func=cmd_processor)

    p = sub.add_parser("api", help="run the dashboard API")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.set_defaults(func=cmd_api)

    p = sub.add_parser("simulate", help="publish readings for simulated patients")
    p.add_argument("--patients", type=int, default=10)
    p.add_argument(
        "--scenario", default="normal", help="a scenario file in simulators/scenarios (normal, hypo, ...)"
    )
    p.add_argument("--speed", type=float, default=1.0, help="simulated minutes per real minute")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--rate", type=float, default=None, help="total readings/s; every device at one interval (load tests)"
    )
    p.add_argument(
        "--connections",
        type=int,
        default=None,
        help="share this many MQTT connections, as hubs; default: one per device with its credentials",
    )
    p.add_argument("--report", type=Path, default=None, help="write what was sent as JSON here")
    p.add_argument(
        "--reconcile", action="store_true", help="then compare with what was stored; exit 1 unless exact"
    )
    p.set_defaults(func=cmd_simulate)

    # The bench sits above the launcher: `main` hands `telehealth bench ...` to `python -m bench`
    # before parsing, so this entry only lists the command in --help.
    sub.add_parser("bench", help="measure end-to-end throughput beside raw baselines (python -m bench)")

    db = sub.add_parser("db", help="database administration").add_subparsers(dest="db_command", required=True)
    db.add_parser("migrate", help="apply pending schema migrations").set_defaults(func=cmd_migrate)

    from launcher import cli_security, cli_users

    cli_users.add_user_commands(sub)
    cli_security.add_audit_commands(sub)

    devices = sub.add_parser("devices", help="device administration").add_subparsers(
        dest="devices_command", required=True
    )
    p = devices.add_parser("provision", help="provision a device and print its MQTT credentials")
    p.add_argument("--device-id", required=True)
    p.add_argument("--patient-id", type=UUID, required=True)
    p.add_argument("--kind", choices=("cgm", "glucometer", "oximeter", "uploader"), required=True)
    p.set_defaults(func=cmd_devices_provision)
    p = devices.add_parser("revoke", help="disable a device's broker login at once and refuse it")
    p.add_argument("--device-id", required=True)
    p.set_defaults(func=cmd_devices_revoke)
    p = devices.add_parser("reassign", help="give a device to another patient, with a new secret")
    p.add_argument("--device-id", required=True)
    p.add_argument("--patient-id", type=UUID, required=True)
    p.set_defaults(func=cmd_devices_reassign)

    broker = sub.add_parser("broker", help="device broker administration").add_subparsers(
        dest="broker_command", required=True
    )
    p = broker.add_parser("config", help="write Mosquitto's dynamic-security file from the device table")
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=cmd_broker_config)
    p = broker.add_parser("certs", help="make a local CA and a TLS certificate for the broker (if missing)")
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--host", action="append", required=True, help="repeatable: names devices connect to")
    p.set_defaults(func=cmd_broker_certs)

    research_pull.add_parser(sub)
    settings_doc.add_parser(sub)
    return parser


#: long-running commands: an unexpected error there keeps its traceback for the operator's log
SERVICES = frozenset({"up", "gateway", "processor", "api", "simulate"})


def main(argv: list[str] | None = None) -> None:
    """Run one command. An admin command's error is one line that says what to do, never a
    traceback (`--debug` shows it)."""
    import psycopg

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:
        # The bench imports the launcher's stack; the launcher never imports the bench. The
        # bench replaces this process, so signals reach it as before.
        os.execv(sys.executable, [sys.executable, "-m", "bench", *argv[1:]])
    parser = build_parser()
    parser.add_argument("--debug", action="store_true", help="show the traceback of an unexpected error")
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except KeyboardInterrupt:
        sys.exit(130)
    except (TelehealthError, LookupError) as exc:
        sys.exit(f"telehealth: {exc}")
    except psycopg.OperationalError as exc:
        if args.command in SERVICES or args.debug:
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        sys.exit(
            f"telehealth: cannot reach the database ({first}): start the system with `telehealth up`,"
            " or set TELEHEALTH_DATABASE_URL (or the data dir's stack.json) to a running one"
        )
    except psycopg.errors.IntegrityError as exc:
        if args.debug:
            raise
        detail = exc.diag.message_detail or exc.diag.message_primary or type(exc).__name__
        sys.exit(f"telehealth: refused by the database: {detail}")
    except Exception as exc:
        if args.command in SERVICES or args.debug:
            raise
        sys.exit(f"telehealth: {type(exc).__name__}: {exc} (run again with --debug for the traceback)")
