"""`telehealth bench --report` as a user runs it: its own embedded servers, a short run, the report.

Checks what the report says happened (every reading stored, the sweep's readings stored,
queries answered), never how fast: the machine is shared.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.integration


def _bench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The installed `telehealth bench`, with no settings from this environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEHEALTH_")}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "telehealth"), "bench", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done


def test_bench_report_records_the_run_the_sweep_and_the_queries(tmp_path: Path) -> None:
    out = tmp_path / "report"
    done = _bench(
        tmp_path,
        *("--readings", "1000", "--devices", "20", "--sweep", "300", "--sweep-seconds", "2"),
        *("--latency-load", "0", "--fleet-devices", "0", "--research-patients", "0"),
        *("--report", str(out)),
    )
    figures = json.loads((out / "figures.json").read_text())
    assert figures["gateway_forwarded"] == 1000 and figures["gateway_readings_s"] > 0
    assert set(figures["gateway_cpu_us_per_reading"]) == {"gateway-0"}
    assert figures["e2e_stored"] == 1000  # counted after the gateway-alone backlog was stored
    assert figures["mqtt_relay_msgs_s"] > 0 and figures["copy_rows_s"] > 0
    [point] = figures["sweep"]
    assert point["offered_readings_s"] == 300
    assert point["stored"] == point["sent"] == 600
    assert point["p50_ms"] is not None and point["p50_ms"] <= point["p99_ms"] <= point["max_ms"]
    assert set(figures["queries"]) == {"idle", "end to end", "sweep 300/s"}
    for phase, by_name in figures["queries"].items():
        for name in ("observations 24 h", "glucose summary 14 d"):
            query = by_name[name]
            assert query["requests"] > 0 and query["errors"] == 0, (phase, name, query)
    assert set(figures["rss_mib"]) == {"processor", "gateway-0", "api"}
    assert set(figures["cpu_us_per_reading"]) == {"processor", "gateway-0", "api"}
    assert figures["machine"]["cores"] == os.cpu_count()
    report = (out / "figures.md").read_text()
    assert "| gateway alone (MQTT -> gateway -> Kafka, no processor) |" in report
    assert "| end to end, stored exactly once |" in report and "| observations 24 h | idle |" in report
    assert "query observations 24 h, sweep 300/s" in done.stdout


def test_bench_times_every_probe_alert_to_the_row_the_topic_and_the_dashboard_stream(
    tmp_path: Path,
) -> None:
    """The latency probe once timed nothing (one device alternating 88/97 % was judged a motion
    artefact); every probe must now be seen at every point, its reading at the gateway included,
    with two processors sharing the partitions."""
    out = tmp_path / "report"
    done = _bench(
        tmp_path,
        *("--readings", "0", "--devices", "20", "--no-queries", "--processors", "2"),
        *("--latency-load", "200", "--latency-probes", "5"),
        *("--fleet-devices", "0", "--research-patients", "0", "--report", str(out)),
    )
    latency = json.loads((out / "figures.json").read_text())["latency"]
    assert latency["probes"] == 5
    for point in ("gateway_ms", "row_ms", "topic_ms", "sse_ms"):
        assert len(latency[point]) == 5, (point, latency)
        assert all(0 < ms < 30_000 for ms in latency[point]), (point, latency)
    assert "publish -> dashboard stream event (SSE)" in done.stdout
    assert "processor backlog during the probes: max" in done.stdout  # read off the heartbeats
    assert latency["backlog_max"] >= latency["backlog_last"] >= 0
    assert set(json.loads((out / "figures.json").read_text())["rss_mib"]) == {
        "gateway-0",
        "processor-0",
        "processor-1",
        "api",
    }


def test_bench_stopped_by_sigterm_stops_its_servers_and_services(tmp_path: Path) -> None:
    """A bench stopped with SIGTERM (a CI timeout, `kill`) once left its embedded PostgreSQL
    and its services running: Python's default SIGTERM skipped the clean-up."""
    # short: PostgreSQL's socket goes in here, and a socket's path is at most 107 bytes
    scratch = Path(tempfile.mkdtemp(prefix="bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEHEALTH_")} | {"TMPDIR": str(scratch)}
    with (tmp_path / "stderr").open("w") as stderr:
        bench = subprocess.Popen(
            [str(Path(sys.executable).parent / "telehealth"), "bench", *_QUICK_PROBE],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    started: list[psutil.Process] = []
    ours: list[psutil.Process] = []
    try:
        assert bench.stdout is not None
        for line in bench.stdout:  # the servers and services are up once the probe begins
            if line.startswith("alert latency"):
                break
        started = psutil.Process(bench.pid).children(recursive=True)
        ours = [p for p in psutil.process_iter() if str(scratch) in _cmdline(p)]
        assert any(p.name() == "postgres" for p in ours), (tmp_path / "stderr").read_text()[-2000:]
        assert len(started) >= 3  # gateway, processor, api, publishers
        bench.send_signal(signal.SIGTERM)
        assert bench.wait(timeout=120) == 128 + signal.SIGTERM
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait()
        if bench.stdout is not None:
            bench.stdout.close()
    alive: list[psutil.Process] = []
    try:
        _, alive = psutil.wait_procs([*started, *ours], timeout=30)
        assert not alive, [(p.pid, _cmdline(p)) for p in alive]
    finally:
        for leftover in alive:  # this test's failure must not leave servers to the next ones
            with contextlib.suppress(psutil.Error):
                leftover.kill()
        shutil.rmtree(scratch, ignore_errors=True)


_QUICK_PROBE = (
    *("--readings", "0", "--no-queries", "--latency-load", "200", "--latency-probes", "20"),
    *("--fleet-devices", "0", "--research-patients", "0"),
)


def _cmdline(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())
    except psutil.Error:
        return ""


def test_bench_fleet_provisions_every_device_login_and_reconciles_exactly(tmp_path: Path) -> None:
    """The fleet's logins reach the embedded broker by a restart with all of them (one admin
    command per device made Mosquitto rewrite its login file each time: 10,000 never finished);
    every device then connects with its own login and everything it sent is stored."""
    done = _bench(
        tmp_path,
        *("--readings", "0", "--devices", "20", "--no-queries", "--latency-load", "0"),
        *("--fleet-devices", "40", "--fleet-rate", "40", "--fleet-seconds", "3", "--research-patients", "0"),
    )
    fleet = [line for line in done.stdout.splitlines() if line.startswith("fleet")]
    assert any("40 devices provisioned" in line and "0 failed" in line for line in fleet), fleet
    assert any(line.startswith("fleet reconciliation:") and line.endswith("-> exact") for line in fleet), (
        fleet
    )
