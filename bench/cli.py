"""`telehealth bench` (also `python -m bench`): the bench's own command line.

The bench sits above the launcher (it starts the stack the launcher builds), so the launcher
never imports it: `telehealth bench ...` runs this module as a program."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from telehealth import logs
from telehealth.settings import get_settings

HELP = "measure end-to-end throughput beside raw baselines"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="telehealth bench", description=HELP)
    p.add_argument("--readings", type=int, default=50_000, help="0 skips baselines and end to end")
    p.add_argument("--devices", type=int, default=1000)
    p.add_argument("--per-message", type=int, default=1, help="readings per MQTT message (1 = live)")
    p.add_argument("--publishers", type=int, default=2, help="publisher processes")
    p.add_argument("--gateways", type=int, default=1, help="gateway processes (shared subscription)")
    p.add_argument("--processors", type=int, default=1, help="processor processes (one consumer group)")
    p.add_argument(
        "--latency-load",
        type=float,
        default=5000,
        help="background readings/s while timing alerts (0 skips the latency run)",
    )
    p.add_argument("--latency-probes", type=int, default=40, help="alerts timed in the latency run")
    p.add_argument(
        "--fleet-devices",
        type=int,
        default=10_000,
        help="devices one simulator drives (0 skips the fleet run)",
    )
    p.add_argument("--fleet-rate", type=float, default=2000, help="the fleet's total readings/s")
    p.add_argument("--fleet-seconds", type=float, default=30)
    p.add_argument(
        "--fleet-connections", type=int, default=None, help="shared connections; default one per device"
    )
    p.add_argument(
        "--tls", action="store_true", help="load generators publish over the broker's TLS listener"
    )
    p.add_argument(
        "--research-patients",
        type=int,
        default=10_000,
        help="patients in the 30-day hourly research aggregate (0 skips it; seeding 10,000 takes minutes)",
    )
    p.add_argument("--report", type=Path, default=None, help="write figures.json, figures.md and plots here")
    p.add_argument(
        "--sweep",
        type=lambda text: [float(x) for x in text.split(",")],
        nargs="?",
        const=[1000.0, 2000.0, 4000.0, 6000.0, 8000.0, 12000.0],
        default=None,
        help="offer increasing readings/s (comma-separated; default 1000,...,12000) and record the curve",
    )
    p.add_argument(
        "--profile", type=Path, default=None, help="py-spy the services during end to end; stacks here"
    )
    p.add_argument("--sweep-seconds", type=float, default=5, help="seconds of load per sweep step")
    p.add_argument(
        "--soak",
        type=float,
        default=0,
        metavar="RATE",
        help="offer RATE readings/s for --soak-seconds: backlog and RSS slopes",
    )
    p.add_argument("--soak-seconds", type=float, default=300, help="length of the soak")
    p.add_argument("--no-queries", action="store_true", help="skip the dashboard queries timed during ingest")
    p.add_argument(
        "--clinical",
        action="store_true",
        help="instead: score low-glucose alarms (this engine beside Nightscout's AR2) on a simulated cohort",
    )
    p.add_argument(
        "--clinical-cohort",
        choices=("own", "uva", "both"),
        default="both",
        help="the project's simulator (settings chosen on it), UVA/Padova via simglucose (held out), or both",
    )
    p.add_argument(
        "--clinical-patients", type=int, default=None, help="patients per cohort (default: own 100, uva 30)"
    )
    p.add_argument("--clinical-days", type=int, default=6)
    p.add_argument("--clinical-seed", type=int, default=1)
    p.add_argument(
        "--clinical-curve",
        type=Path,
        default=None,
        metavar="DIR",
        help="also sweep the predicted-low setting and plot warned-before-onset against false alerts",
    )
    return p


def run_command(args: argparse.Namespace) -> None:
    """The clinical scoring, or the end-to-end run with its report and profiles."""
    if args.clinical:
        from bench import clinical, tradeoff

        names = ["own", "uva"] if args.clinical_cohort == "both" else [args.clinical_cohort]
        curves = {}
        for name in names:
            count = args.clinical_patients or (30 if name == "uva" else 100)
            traces = clinical.cohort(name, count, args.clinical_days, args.clinical_seed)
            prepared = clinical.prepare(name, traces, args.clinical_days)
            print(clinical.evaluate(prepared).report() + "\n", flush=True)
            if args.clinical_curve is not None:
                curves[name] = tradeoff.curve(prepared)
                print(tradeoff.curve_table(name, curves[name]) + "\n", flush=True)
        if args.clinical_curve is not None:
            try:
                print(f"plot: {tradeoff.plot(curves, args.clinical_curve / 'alerts-tradeoff.png')}")
            except ImportError:
                print("plot: matplotlib is not installed (pip install -e '.[plots]')")
        return
    from bench.run import run

    logs.configure("bench")
    # Python's default SIGTERM ends the process on the spot, leaving the embedded servers and
    # the services running; as SystemExit it unwinds through the `finally` that stops them.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    figures = run(
        get_settings(),
        readings=args.readings,
        devices=args.devices,
        per_message=args.per_message,
        publishers=args.publishers,
        gateways=args.gateways,
        processors=args.processors,
        latency_load=args.latency_load,
        latency_probes=args.latency_probes,
        fleet_devices=args.fleet_devices,
        fleet_rate=args.fleet_rate,
        fleet_seconds=args.fleet_seconds,
        fleet_connections=args.fleet_connections,
        tls=args.tls,
        research_patients=args.research_patients,
        sweep_rates=args.sweep,
        sweep_seconds=args.sweep_seconds,
        soak_rate=args.soak,
        soak_seconds=args.soak_seconds,
        queries=not args.no_queries,
        profile_dir=args.profile,
    )
    print(figures.report())
    if args.report is not None:
        from bench.report import write

        written = write(figures, args.report)
        print(f"report: {', '.join(str(args.report / name) for name in written)}")
    if args.profile is not None:
        from bench.profile import top

        for collapsed in sorted(args.profile.glob("*.txt")):
            print(top(collapsed))


def main(argv: list[str] | None = None) -> None:
    run_command(build_parser().parse_args(argv))
