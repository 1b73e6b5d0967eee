"""The simulated patients stay plausible over long runs and are reproducible under a seed."""

from __future__ import annotations

import statistics

import pytest

from simulators.physiology import (
    COPD,
    DAY,
    HEALTHY,
    T1,
    T2,
    CgmSensor,
    FingerPrick,
    Glucose,
    GlucoseEvent,
    GlucoseProfile,
    Oximeter,
)
from telehealth.codes import CODES

THIRTY_DAYS = range(0, 30 * DAY, 5)


def cgm_series(profile: GlucoseProfile, seed: int, events: tuple[GlucoseEvent, ...] = ()) -> list[float]:
    sensor = CgmSensor(Glucose(profile, seed, events), seed)
    return [sensor.read(m) for m in THIRTY_DAYS]


@pytest.mark.parametrize("seed", [1, 7, 42])
def test_type_1_month_looks_like_type_1(seed: int) -> None:
    values = cgm_series(T1, seed)
    assert all(2.2 <= v <= 22.2 and CODES["glucose"].is_plausible(v) for v in values)
    below = sum(v < 3.9 for v in values) / len(values)
    above = sum(v > 10 for v in values) / len(values)
    assert 6.5 < statistics.fmean(values) < 10
    assert 0.005 < below < 0.08  # some hypoglycaemia, as real T1 has
    assert 0.05 < above < 0.4


@pytest.mark.parametrize("seed", [1, 7, 42])
def test_type_2_month_runs_higher_and_rarely_low(seed: int) -> None:
    values = cgm_series(T2, seed)
    assert 7.5 < statistics.fmean(values) < 11
    assert min(values) > 3.0


def test_seeded_runs_are_reproducible_and_seeds_differ() -> None:
    assert cgm_series(T1, 3)[:500] == cgm_series(T1, 3)[:500]
    assert cgm_series(T1, 3)[:500] != cgm_series(T1, 4)[:500]
    a, b = Oximeter(COPD, 9), Oximeter(COPD, 9)
    assert [a.read(m) for m in range(2000)] == [b.read(m) for m in range(2000)]


def test_overdose_drives_a_hypo_that_the_cgm_sees_late() -> None:
    glucose = Glucose(T1, 5, (GlucoseEvent(kind="overdose", at_min=8 * 60 + 10, size=7.0),))
    sensor = CgmSensor(glucose, 5)
    readings = {m: sensor.read(m) for m in range(8 * 60, 10 * 60, 5)}
    assert min(readings.values()) < 3.0
    falling = 8 * 60 + 40
    assert readings[falling] > glucose.at(falling)  # interstitial lag behind blood


def test_finger_pricks_four_a_day_within_a_few_percent() -> None:
    glucose = Glucose(T2, 2)
    meter = FingerPrick(glucose, 2)
    checks = [m for m in range(1, 7 * DAY) if meter.due(m - 1, m)]
    assert len(checks) == 28
    assert all(abs(meter.read(m) / glucose.at(m) - 1) < 0.2 for m in checks)


@pytest.mark.parametrize(("profile", "low", "high"), [(HEALTHY, 96, 98), (COPD, 89, 93)])
def test_oximetry_profiles(profile: object, low: float, high: float) -> None:
    oximeter = Oximeter(profile, 11)  # type: ignore[arg-type]
    samples = [oximeter.read(m) for m in range(7 * DAY)]
    spo2 = [s for s, _ in samples]
    pulse = [p for _, p in samples]
    assert low < statistics.fmean(spo2) < high
    assert all(CODES["spo2"].is_plausible(s) and CODES["pulse"].is_plausible(p) for s, p in samples)
    assert 40 < statistics.fmean(pulse) < 100
    artefacts = sum(s < statistics.fmean(spo2) - 8 for s in spo2) / len(spo2)
    assert artefacts < 0.03
