"""The bench report: strict JSON, readable markdown, plots only when matplotlib is there."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

from bench.latency import Latency
from bench.profile import top
from bench.report import markdown, write
from bench.run import Figures
from bench.soak import Soak, SoakSample
from bench.sweep import SweepPoint


def _figures() -> Figures:
    figures = Figures(readings=1000, per_message=1, publishers=2, gateways=1)
    figures.mqtt_relay_msgs_s = 8000.0
    figures.kafka_records_s = 30000.0
    figures.copy_rows_s = 100000.0
    figures.e2e_readings_s = 2000.0
    figures.e2e_stored = 1000
    figures.machine = {"cores": 2, "memory_gib": 24.0, "load_average": [1.0, 2.0, 3.0]}
    figures.load_after = [4.0, 3.0, 2.0]
    figures.rss_mib = {"gateway-0": 80.0, "processor": 70.0}
    figures.cpu_us_per_reading = {"gateway-0": 95.0, "processor": 110.0}
    figures.sweep = [
        SweepPoint(1000, 998, 995, 5000, 5000, 40.0, 80.0, 200.0, 250.0),
        SweepPoint(4000, 3990, 0.0, 0, 20000, math.nan, math.nan, math.nan, math.nan),
    ]
    figures.queries = {
        "idle": {
            "observations 24 h": {"requests": 50, "errors": 0, "p50_ms": 8.0, "p99_ms": 12.0, "max_ms": 13.0}
        },
        "sweep 1,000/s": {
            "observations 24 h": {"requests": 10, "errors": 1, "p50_ms": 20.0, "p99_ms": 90.0, "max_ms": 95.0}
        },
    }
    figures.soak = Soak(2000, 120)
    figures.soak.samples = [
        SoakSample(10.0 * i, 20_000 * i, 20_000 * i - 50, {"processor": 70.0}, {"processor": 0.2 * i})
        for i in range(13)
    ]
    return figures


def test_markdown_has_ratios_sweep_queries_and_services() -> None:
    text = markdown(_figures())
    assert "| end to end, stored exactly once | 2,000 readings/s (1,000/1,000) | 0.25 of relay" in text
    assert "| 1,000 | 998 | 995 | 0.12 | 40 | 80 | 200 | 250 |" in text
    assert "| 4,000 | 3,990 | 0 | n/a | n/a | n/a | n/a | n/a |" in text  # nothing stored: no ratio
    assert "| observations 24 h | idle | 50 | 0 | 8.0 | 12.0 | 13.0 |" in text
    assert "| observations 24 h | sweep 1,000/s | 10 | 1 | 20.0 | 90.0 | 95.0 |" in text
    assert "| gateway-0 | 80 | 95 |" in text
    assert "load average at start [1.0, 2.0, 3.0], at end [4.0, 3.0, 2.0]" in text
    assert "soak: offered 2,000 readings/s for 120 s" in text
    assert "RSS slope (MiB/min): processor +0.00" in text


def test_write_gives_strict_json_and_plots_when_matplotlib_is_installed(tmp_path: Path) -> None:
    written = write(_figures(), tmp_path / "out")
    data = json.loads(
        (tmp_path / "out" / "figures.json").read_text(),
        parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)),  # NaN/Infinity are not JSON
    )
    assert data["sweep"][1]["p50_ms"] is None
    assert data["sweep"][0]["achieved_readings_s"] == 995
    assert data["cpu_us_per_reading"] == {"gateway-0": 95.0, "processor": 110.0}
    report = (tmp_path / "out" / "figures.md").read_text()
    if importlib.util.find_spec("matplotlib") is not None:
        assert written == [
            "figures.json",
            "figures.md",
            "throughput.png",
            "latency.png",
            "soak.png",
            "rss.png",
        ]
        for name in written[2:]:
            assert (tmp_path / "out" / name).read_bytes().startswith(b"\x89PNG")
            assert f"![{name}]({name})" in report
    else:
        assert written == ["figures.json", "figures.md"]
        assert "plots skipped" in report


def test_top_ranks_self_and_inclusive_costs(tmp_path: Path) -> None:
    stacks = tmp_path / "gateway.txt"
    stacks.write_text("main;route;validate 6\nmain;route;encode 3\nmain;idle 1\nnot a sample line\n")
    text = top(stacks, n=2)
    assert text.splitlines()[0] == "gateway: 10 samples"
    self_part, inclusive_part = text.split("  inclusive:")
    assert self_part.index("60.0%  validate") < self_part.index("30.0%  encode")
    assert "idle" not in self_part  # cut at n=2
    assert "100.0%  main" in inclusive_part and "90.0%  route" in inclusive_part


def test_top_of_an_empty_profile_says_so(tmp_path: Path) -> None:
    empty = tmp_path / "processor.txt"
    empty.write_text("")
    assert top(empty) == "processor.txt: no samples"


def test_latency_report_says_when_the_pipeline_fell_behind() -> None:
    """A probe run whose background load outran the pipeline times a growing queue; its report
    must say so rather than leave it to be read off the p99."""
    common = {"probes": 2, "topic_ms": [40.0, 60.0], "row_ms": [20.0, 30.0], "background_readings_s": 5000}
    kept = Latency(**common, backlog_max=900, backlog_last=300)
    behind = Latency(**common, backlog_max=60_000, backlog_last=55_000)
    assert kept.kept_up and not behind.kept_up
    assert "at the end 300 (kept up)" in kept.report()
    assert "max 60,000 records, at the end 55,000 (FELL BEHIND" in behind.report()
