"""The soak's figures from its samples: slopes after the warm-up, under load only."""

from __future__ import annotations

import pytest

from bench.soak import WARM_UP_S, Soak, SoakSample


def run(backlog_per_s: float, rss_per_min: float) -> Soak:
    soak = Soak(offered_readings_s=1000, seconds=300)
    for i in range(31):
        at = 10.0 * i
        published = int(1000 * at)
        stored = published - int(backlog_per_s * at)
        rss = {"processor": 100 + rss_per_min * at / 60}
        soak.samples.append(SoakSample(at, published, stored, rss, {"processor": at / 100}))
    # after the load: the backlog drains and memory is given back; not part of any slope
    soak.samples.append(
        SoakSample(320.0, 300_000, 300_000, {"processor": 50.0}, {"processor": 3.3}, loaded=False)
    )
    return soak


def test_a_pipeline_that_keeps_up_is_flat() -> None:
    soak = run(backlog_per_s=0, rss_per_min=0)
    assert soak.backlog_slope == pytest.approx(0, abs=1e-9)
    assert soak.rss_slope_mib_min()["processor"] == pytest.approx(0, abs=1e-9)
    assert soak.stored_readings_s == pytest.approx(1000)


def test_a_growing_backlog_and_a_leak_show_as_slopes() -> None:
    soak = run(backlog_per_s=250, rss_per_min=2)
    assert soak.backlog_slope == pytest.approx(250, rel=0.01)
    assert soak.rss_slope_mib_min()["processor"] == pytest.approx(2, rel=0.01)
    assert soak.stored_readings_s == pytest.approx(750, rel=0.01)


def test_cpu_per_reading_counts_the_drain_and_the_generator_apart() -> None:
    soak = run(backlog_per_s=0, rss_per_min=0)
    soak.generator_cpu_s = 6.0
    per = soak.cpu_us_per_reading()
    assert per["processor"] == pytest.approx(1e6 * 3.3 / 300_000)
    assert per["load generator"] == pytest.approx(20.0)
    assert "backlog at end 0" in soak.report()


def test_the_warm_up_is_left_out() -> None:
    soak = run(backlog_per_s=0, rss_per_min=0)
    soak.samples[0].rss_mib["processor"] = 10.0  # start-up, below the warm-up mark
    assert soak.samples[0].at_s < WARM_UP_S
    assert soak.rss_slope_mib_min()["processor"] == pytest.approx(0, abs=1e-9)
