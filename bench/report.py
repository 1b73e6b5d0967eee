"""`telehealth bench --report DIR`: the figures as JSON, a markdown table, and plots.

Plots need matplotlib (`pip install 'telehealth-stream[plots]'`); without it the JSON and
the markdown are still written and the plots are skipped with a note.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

if TYPE_CHECKING:
    from bench.run import Figures


def machine() -> dict[str, Any]:
    """Where the figures came from, and how busy it was (the machine may be shared)."""
    return {
        "host": platform.node(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _num(value: float | None, digits: int = 0) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:,.{digits}f}"


def _clean(value: Any) -> Any:
    """NaN (no sample) as null, so the JSON is strict."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if a and b else "n/a"


def markdown(figures: Figures) -> str:
    f = figures
    lines = ["# telehealth bench", ""]
    m = f.machine
    if m:
        lines += [
            f"Machine: {m.get('cores')} cores, {m.get('memory_gib')} GiB, {m.get('cpu')}, {m.get('system')},"
            f" Python {m.get('python')}; load average at start {m.get('load_average')},"
            f" at end {f.load_after}; {m.get('at')}.",
            "",
        ]
    if f.readings:
        e2e_msgs = f.e2e_readings_s / f.per_message
        lines += [
            f"{f.readings:,} readings, {f.per_message} per MQTT message, {f.publishers} publisher processes,"
            f" {f.gateways} gateway process(es), {f.processors} processor process(es),"
            f" {'TLS, ' if f.tls else ''}authenticated.",
            "",
            "| measure | figure | ratio |",
            "| --- | ---: | ---: |",
            f"| raw MQTT relay (QoS 1, paho in and out) | {_num(f.mqtt_relay_msgs_s)} msg/s | 1 |",
            f"| raw Kafka produce + consume | {_num(f.kafka_records_s)} records/s | |",
            f"| raw COPY into PostgreSQL | {_num(f.copy_rows_s)} rows/s | |",
            "| gateway alone (MQTT -> gateway -> Kafka, no processor) |"
            f" {_num(f.gateway_readings_s)} readings/s"
            f" ({f.gateway_forwarded:,}/{f.readings:,}) |"
            f" {_ratio(f.gateway_readings_s / f.per_message, f.mqtt_relay_msgs_s)} of relay (messages) |",
            f"| end to end, stored exactly once | {_num(f.e2e_readings_s)} readings/s"
            f" ({f.e2e_stored:,}/{f.readings:,}) |"
            f" {_ratio(e2e_msgs, f.mqtt_relay_msgs_s)} of relay (messages) |",
            f"| end to end / COPY (rows) | | {_ratio(f.e2e_readings_s, f.copy_rows_s)} |",
            "",
        ]
    if f.sweep:
        lines += [
            "Offered load (single-reading messages) against stored readings/s and publish -> stored latency:",
            "",
            "| offered/s | published/s | stored/s | ratio to relay | p50 ms | p90 ms | p99 ms | max ms |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for p in f.sweep:
            lines.append(
                f"| {_num(p.offered_readings_s)} | {_num(p.published_readings_s)} |"
                f" {_num(p.achieved_readings_s)} | {_ratio(p.achieved_readings_s, f.mqtt_relay_msgs_s)} |"
                f" {_num(p.p50_ms)} | {_num(p.p90_ms)} | {_num(p.p99_ms)} | {_num(p.max_ms)} |"
            )
        lines.append("")
    if f.queries:
        lines += [
            "Dashboard queries by phase of the run (one clinician, back-to-back requests, send to"
            " last byte; end to end publishes as fast as it can, so it saturates the machine;"
            " a sweep step includes draining its backlog):",
            "",
            "| query | phase | requests | errors | p50 ms | p99 ms | max ms |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name in dict.fromkeys(n for by_name in f.queries.values() for n in by_name):
            for phase, by_name in f.queries.items():
                if q := by_name.get(name):
                    lines.append(
                        f"| {name} | {phase} | {q['requests']:.0f} | {q['errors']:.0f} |"
                        f" {_num(q['p50_ms'], 1)} | {_num(q['p99_ms'], 1)} | {_num(q['max_ms'], 1)} |"
                    )
        lines.append("")
    if f.rss_mib:
        lines += [
            "| service | peak RSS MiB | CPU µs per stored reading | CPU µs per reading, gateway alone |",
            "| --- | ---: | ---: | ---: |",
        ]
        lines += [
            f"| {name} | {mib:.0f} | {_num(f.cpu_us_per_reading.get(name, math.nan))} |"
            f" {_num(f.gateway_cpu_us_per_reading.get(name, math.nan))} |"
            for name, mib in f.rss_mib.items()
        ]
        lines.append("")
    for extra in (
        f.soak.report() if f.soak else None,
        f.latency.report() if f.latency else None,
        f.fleet,
        f.research,
    ):
        if extra:
            lines += ["```", extra, "```", ""]
    return "\n".join(lines)


def _plots(figures: Figures, out: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    if figures.sweep:
        offered = [p.offered_readings_s for p in figures.sweep]
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(offered, [p.achieved_readings_s for p in figures.sweep], "o-", label="stored")
        ax.plot(offered, offered, ":", color="grey", label="offered")
        if figures.mqtt_relay_msgs_s:
            ax.axhline(figures.mqtt_relay_msgs_s, color="red", ls="--", label="raw MQTT relay")
        ax.set(xlabel="offered readings/s", ylabel="readings/s", title="Throughput against offered load")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "throughput.png", dpi=100)
        plt.close(fig)
        fig, ax = plt.subplots(figsize=(6, 4))
        for key in ("p50_ms", "p90_ms", "p99_ms"):
            ax.plot(offered, [getattr(p, key) for p in figures.sweep], "o-", label=key.split("_")[0])
        ax.set(xlabel="offered readings/s", ylabel="publish -> stored, ms", title="Latency against load")
        ax.set_yscale("log")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "latency.png", dpi=100)
        plt.close(fig)
        written += ["throughput.png", "latency.png"]
    if figures.soak is not None and figures.soak.samples:
        samples = figures.soak.samples
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(6, 5), sharex=True)
        at = [s.at_s / 60 for s in samples]
        top.plot(at, [s.backlog for s in samples], ".-")
        top.set(
            ylabel="backlog, readings", title=f"Soak at {figures.soak.offered_readings_s:,.0f} readings/s"
        )
        for name in samples[0].rss_mib:
            bottom.plot(at, [s.rss_mib.get(name, math.nan) for s in samples], ".-", label=name)
        bottom.set(xlabel="minutes", ylabel="RSS, MiB")
        bottom.legend()
        fig.tight_layout()
        fig.savefig(out / "soak.png", dpi=100)
        plt.close(fig)
        written.append("soak.png")
    if figures.rss_mib:
        fig, ax = plt.subplots(figsize=(6, 3))
        names = list(figures.rss_mib)
        ax.barh(names, [figures.rss_mib[n] for n in names])
        ax.set(xlabel="peak RSS, MiB", title="Memory per service")
        fig.tight_layout()
        fig.savefig(out / "rss.png", dpi=100)
        plt.close(fig)
        written.append("rss.png")
    return written


def write(figures: Figures, out: Path) -> list[str]:
    """Write figures.json, figures.md and the plots into `out`; the file names written."""
    out.mkdir(parents=True, exist_ok=True)
    data = _clean(dataclasses.asdict(figures))
    (out / "figures.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    plots = _plots(figures, out)
    text = markdown(figures)
    if plots:
        text += "\n" + "\n".join(f"![{p}]({p})" for p in plots) + "\n"
    else:
        text += "\n(plots skipped: install the `plots` extra, matplotlib)\n"
    (out / "figures.md").write_text(text)
    return ["figures.json", "figures.md", *plots]
