"""Clinical cases for the threshold engine: values in (one a minute), actions out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from processor.alerts.engine import Act, ThresholdEngine
from processor.alerts.rules import DEFAULT_RULES, Severity, rules_for
from processor.alerts.trend import TrendTracker
from processor.normalise import NormalisedObservation, Quality
from telehealth.thresholds import Thresholds

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
UNITS = {"glucose": "mmol/L", "spo2": "%", "pulse": "/min"}
U, W = Severity.URGENT, Severity.WARNING
OPEN, ESC, RES = Act.OPEN, Act.UPGRADE, Act.RESOLVE


def series(
    patient: UUID, code: str, values: list[float], start: int = 0, quality: tuple[Quality, ...] = ()
) -> list[NormalisedObservation]:
    return [
        NormalisedObservation(
            patient,
            f"dev-{code}",
            start + i,
            T0 + timedelta(minutes=start + i),
            T0 + timedelta(minutes=start + i),
            code,
            v,
            UNITS[code],
            "",
            None,
            quality,
        )
        for i, v in enumerate(values)
    ]


def run(code: str, values: list[float], **thresholds: Any) -> list[tuple[Act, str, Severity, float]]:
    patient = uuid4()
    rules = rules_for(Thresholds(**thresholds)) if thresholds else DEFAULT_RULES
    actions = ThresholdEngine(rules).evaluate(series(patient, code, values), {})
    return [(a.act, a.rule, a.severity, a.value) for a in actions]


CASES = [
    # name, code, values, expected actions (act, rule, severity, value of the reading that caused it)
    ("urgent low fires on the first reading", "glucose", [6.0, 2.8], [(OPEN, "glucose_low", U, 2.8)]),
    ("a single low reading is noise", "glucose", [3.5, 5.0], []),
    ("two consecutive lows open a warning", "glucose", [3.5, 3.6], [(OPEN, "glucose_low", W, 3.6)]),
    ("an interrupted streak starts again", "glucose", [3.5, 4.5, 3.6], []),
    (
        "a falling series opens then upgrades",
        "glucose",
        [4.2, 3.7, 3.4, 2.9],
        [(OPEN, "glucose_low", W, 3.4), (ESC, "glucose_low", U, 2.9)],
    ),
    (
        "hovering on the line does not flap",
        "glucose",
        [3.8, 3.8, 3.9, 3.8, 4.0, 3.85, 4.1, 3.8],
        [(OPEN, "glucose_low", W, 3.8)],
    ),
    (
        "15 minutes back above the line ends the episode (consensus), not one reading",
        "glucose",
        [3.5, 3.5] + [4.3] * 15 + [4.4],
        [(OPEN, "glucose_low", W, 3.5), (RES, "glucose_low", W, 4.4)],
    ),
    (
        "urgent low recovers after 15 minutes at or above 3.9",
        "glucose",
        [2.6, 3.1, 3.8] + [4.2] * 15 + [4.5],
        [(OPEN, "glucose_low", U, 2.6), (RES, "glucose_low", U, 4.5)],
    ),
    (
        "high needs its own margin to clear",
        "glucose",
        [14.5, 14.2, 13.5, 12.8],
        [(OPEN, "glucose_high", W, 14.2), (RES, "glucose_high", W, 12.8)],
    ),
    (
        "SpO2 scale 1 hovering at 93/94",
        "spo2",
        [93, 93, 94, 93, 94, 95],
        [(OPEN, "spo2_low", W, 93), (RES, "spo2_low", W, 95)],
    ),
    ("SpO2 91 is urgent at once", "spo2", [97, 91], [(OPEN, "spo2_low", U, 91)]),
    (
        "pulse 131 is urgent, recovery needs the margin",
        "pulse",
        [131, 120, 108, 100],
        [(OPEN, "pulse", U, 131), (RES, "pulse", U, 100)],
    ),
    ("bradycardia warning band", "pulse", [50, 45, 60], [(OPEN, "pulse", W, 45), (RES, "pulse", W, 60)]),
    ("pulse 110 and 51 are normal", "pulse", [110, 51, 110, 51], []),
]


@pytest.mark.parametrize(("code", "values", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_clinical_cases(
    code: str, values: list[float], expected: list[tuple[Act, str, Severity, float]]
) -> None:
    assert run(code, values) == expected


def test_warning_threshold_is_configurable() -> None:
    assert run("glucose", [3.5], warning_after=1) == [(OPEN, "glucose_low", W, 3.5)]
    assert run("glucose", [3.5, 3.5, 3.5], warning_after=4) == []


def test_late_implausible_and_future_readings_never_alarm_or_count() -> None:
    patient = uuid4()
    engine = ThresholdEngine()
    flagged = [series(patient, "glucose", [2.0], i, (q,)) for i, q in enumerate(Quality)]
    assert engine.evaluate([o for s in flagged for o in s], {}) == []
    # flagged readings did not build a streak either: one live low is still just noise
    assert engine.evaluate(series(patient, "glucose", [3.5], 10), {}) == []


def test_open_alerts_come_from_the_caller_so_none_is_opened_twice() -> None:
    patient = uuid4()
    engine = ThresholdEngine()
    already = {(patient, "glucose_low"): Severity.URGENT}
    assert engine.evaluate(series(patient, "glucose", [2.5, 2.4]), already) == []


def test_streaks_carry_across_batches_and_readings_are_taken_in_measured_order() -> None:
    patient = uuid4()
    engine = ThresholdEngine()
    assert engine.evaluate(series(patient, "glucose", [3.6], 0), {}) == []
    actions = engine.evaluate(list(reversed(series(patient, "glucose", [3.7, 2.8], 1))), {})
    assert [(a.act, a.severity, a.value) for a in actions] == [(OPEN, W, 3.7), (ESC, U, 2.8)]


def test_patients_and_rules_are_independent() -> None:
    a, b = uuid4(), uuid4()
    engine = ThresholdEngine()
    obs = series(a, "glucose", [3.5]) + series(b, "glucose", [3.5], 1) + series(a, "spo2", [93], 2)
    assert engine.evaluate(obs, {}) == []


def cgm(
    patient: UUID, values: list[float], every_min: int, start: int = 0, source: str = "cgm"
) -> list[NormalisedObservation]:
    return [
        NormalisedObservation(
            patient,
            "cgm-1",
            start + i,
            T0 + timedelta(minutes=(start + i) * every_min),
            T0 + timedelta(minutes=(start + i) * every_min),
            "glucose",
            v,
            "mmol/L",
            "",
            source,
            (),
        )
        for i, v in enumerate(values)
    ]


def trend_run(
    observations: list[NormalisedObservation],
    tracker: TrendTracker | None = None,
    engine: ThresholdEngine | None = None,
) -> list[tuple[Act, str, float]]:
    tracker = tracker or TrendTracker()
    engine = engine or ThresholdEngine()
    actions = engine.evaluate(observations + tracker.derive(observations), {})
    return [(a.act, a.rule, a.value) for a in actions]


def test_forecast_catches_a_hypo_before_the_threshold_in_one_upgraded_alert() -> None:
    actions = trend_run(cgm(uuid4(), [6.0, 5.5, 5.0, 4.5, 4.0, 3.6, 3.2, 2.8], every_min=5))
    assert {rule for _, rule, _ in actions} == {"glucose_low"}, "one alert for the episode"
    opened = actions[0]
    assert opened[0] is OPEN and opened[2] < 3.9  # the forecast value, while glucose was above 3.9
    assert [a for a, _, _ in actions[1:]] == [ESC] * (len(actions) - 1)


def test_stable_glucose_and_finger_pricks_raise_no_trend_alert() -> None:
    assert trend_run(cgm(uuid4(), [6.1, 6.0, 6.2, 6.1, 6.0, 6.1], every_min=5)) == []
    assert trend_run(cgm(uuid4(), [4.9, 4.7, 4.5, 4.3, 4.1], every_min=5, source="smbg")) == []


def test_trend_survives_a_restart_when_seeded_from_storage() -> None:
    patient = uuid4()
    earlier = cgm(patient, [5.3, 4.9, 4.5], every_min=5)
    tracker = TrendTracker()
    tracker.seed(patient, [(o.measured_at, o.value) for o in earlier])
    after_restart = trend_run(cgm(patient, [4.1], every_min=5, start=3), tracker=tracker)
    assert [(a, r) for a, r, _ in after_restart] == [(OPEN, "glucose_low")]
    cold = trend_run(cgm(patient, [4.1], every_min=5, start=3))
    assert cold == []


def test_per_patient_thresholds_and_spo2_scale_2() -> None:
    copd = rules_for(Thresholds(spo2_scale=2))
    assert run("spo2", [90, 90]) == [(OPEN, "spo2_low", U, 90)]
    copd_actions = ThresholdEngine(copd).evaluate(series(uuid4(), "spo2", [90, 89, 87, 87, 85]), {})
    assert [(a.act, a.severity, a.value) for a in copd_actions] == [(OPEN, W, 87), (ESC, U, 85)]
    assert run("glucose", [4.2, 4.1], glucose_low=4.4, glucose_urgent_low=3.5) == [
        (OPEN, "glucose_low", W, 4.1)
    ]


def test_a_patient_can_have_the_predicted_low_called_earlier_or_later() -> None:
    """A steady fall of 0.06 mmol/L/min: by default (forecast below 3.9 within 20 min) it is
    called at 4.8; looking 30 min ahead calls it earlier, and a quieter rule ("below 3.0 within
    25 min", for a patient whose many near misses are known) later, still before the first
    low reading."""
    fall = [6.6, 6.3, 6.0, 5.7, 5.4, 5.1, 4.8, 4.5, 4.2, 3.9]

    def opened_at(thresholds: Thresholds) -> float:
        observations = cgm(uuid4(), fall, every_min=5)
        engine = ThresholdEngine(rules_for(thresholds))
        actions = engine.evaluate(observations + TrendTracker().derive(observations), {})
        first = next(a for a in actions if a.rule == "glucose_low")
        return next(o.value for o in observations if o.seq == first.seq)

    default = opened_at(Thresholds())
    earlier = opened_at(Thresholds(glucose_predicted_minutes=30))
    quieter = opened_at(Thresholds(glucose_predicted_low=3.0, glucose_predicted_minutes=25))
    assert earlier > default > quieter >= 3.9, (earlier, default, quieter)


def test_each_patient_gets_their_own_rules() -> None:
    a, b = uuid4(), uuid4()
    obs = series(a, "spo2", [90]) + series(b, "spo2", [90], 1)
    actions = ThresholdEngine().evaluate(obs, {}, {b: rules_for(Thresholds(spo2_scale=2))})
    assert [(x.patient_id, x.severity) for x in actions] == [(a, U)]


@pytest.mark.parametrize(
    "bad",
    [
        {"glucose_low": 2.5},
        {"glucose_high": 3.5},
        {"spo2_warning": 85, "spo2_urgent": 88},
        {"pulse_low_warning": 120},
        {"pulse_high_urgent": 100},
        {"glucose_low": 0.1},
        {"warning_after": 0},
        {"glucose_predicted_low": 4.5},  # above the low line: not a prediction of a low
        {"glucose_predicted_low": 2.5},  # below the urgent line
        {"glucose_predicted_minutes": 2},
    ],
)
def test_inconsistent_thresholds_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Thresholds(**bad)
