"""Warning early without crying wolf: the near-urgent level, the steep drop, the longer urgent
horizon below the low line and the confirmed predicted low (docs/alerts.md)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from uuid import uuid4

import pytest
from pydantic import ValidationError

from processor.alerts import ar2
from processor.alerts.engine import ThresholdEngine
from processor.alerts.glucose import (
    DEFAULT_LOW,
    FORECAST_CODE,
    MAX_PHYSIOLOGICAL_RATE,
    Forecast,
    LowEpisodes,
    Stage,
)
from processor.alerts.rules import Severity, rules_for
from telehealth.thresholds import Thresholds
from tests.unit.processor.alerts.test_glucose import T0, Ward, glucose

U, W = Severity.URGENT, Severity.WARNING


def test_glucose_sitting_at_3_4_and_flat_raises_urgent_low_soon() -> None:
    patient, ward = uuid4(), Ward()
    raised = ward.feed(glucose(patient, [3.4] * 5))
    urgent = [a for a in raised if a.severity is U]
    assert urgent, raised
    first = urgent[0]
    assert first.code == FORECAST_CODE and Stage.of(first.severity, first.code) is Stage.URGENT_SOON
    assert "not rising; at or below 3.4, near the urgent line 3.0" in first.message, first.message
    # as soon as the trend says flat: the third reading (the filter needs 3 readings)
    assert first.seq == 2


def test_a_rise_through_the_low_3s_is_not_urgent() -> None:
    patient, ward = uuid4(), Ward()
    raised = ward.feed(glucose(patient, [3.1, 3.2, 3.3, 3.4, 3.5, 3.6]))
    assert raised and all(a.severity is W for a in raised), raised


def test_the_near_urgent_line_is_per_patient_and_can_be_turned_off() -> None:
    assert Thresholds().urgent_near_line == 3.4
    assert Thresholds(glucose_urgent_low=2.8).urgent_near_line == 3.2
    assert Thresholds(glucose_urgent_low=3.0, glucose_low=3.2).urgent_near_line == 3.2
    with pytest.raises(ValidationError):
        Thresholds(glucose_urgent_near=4.0)
    patient = uuid4()
    ward = Ward()
    ward.engine = ThresholdEngine(rules_for(Thresholds(glucose_urgent_near=3.0)))
    raised = ward.feed(glucose(patient, [3.4] * 5))
    assert raised and all(a.severity is W for a in raised), raised


def test_a_steep_drop_between_two_readings_is_urgent_before_the_filter_catches_up() -> None:
    """5.0 flat, then 0.7 mmol/L down in one reading (0.14 mmol/L/min): the filter weighs a
    single fall against sensor noise; the drop, continued at its rate, is below 3.0 in 15 min."""
    patient, ward = uuid4(), Ward()
    raised = ward.feed(glucose(patient, [5.0] * 5 + [4.3]))
    assert [(a.seq, a.severity) for a in raised] == [(5, U)], raised
    message = raised[0].message
    assert "dropping 0.14 mmol/L/min since the last reading" in message, message
    assert f"2.6 mmol/L within {DEFAULT_LOW.drop_min} min, below 3.0" in message, message


def test_a_drop_that_reaches_3_within_the_predicted_horizon_warns_at_once() -> None:
    patient, ward = uuid4(), Ward()
    raised = ward.feed(glucose(patient, [6.0] * 4 + [5.2]))
    assert [(a.seq, a.severity) for a in raised] == [(4, W)], raised
    assert f"2.8 mmol/L within {DEFAULT_LOW.horizon_min} min, below 3.0" in raised[0].message


def test_the_drop_rule_is_per_patient_and_can_be_turned_off() -> None:
    patient, ward = uuid4(), Ward()
    ward.engine = ThresholdEngine(rules_for(Thresholds(glucose_drop_minutes=0)))
    raised = ward.feed(glucose(patient, [5.0] * 5 + [4.3]))
    assert all(a.severity is W for a in raised), raised


def step(episodes: LowEpisodes, patient: object, minute: int, value: float, f: Forecast) -> Stage | None:
    decision = episodes.step(
        patient,  # type: ignore[arg-type]
        T0 + timedelta(minutes=minute),
        value,
        None,
        DEFAULT_LOW,
        cgm=True,
        forecast=f,
        device="cgm-1",
    )
    return decision.stage if decision is not None else None


def test_a_slow_predicted_low_needs_two_readings_in_a_row() -> None:
    episodes, patient = LowEpisodes(), uuid4()
    slow = Forecast(low=3.8, urgent=3.7, rate=-0.03, far=3.6)
    assert step(episodes, patient, 0, 4.6, slow) is None
    decision = episodes.step(
        patient, T0 + timedelta(minutes=5), 4.5, None, DEFAULT_LOW, cgm=True, forecast=slow, device="cgm-1"
    )
    assert decision is not None and decision.stage is Stage.PREDICTED
    assert f"within {DEFAULT_LOW.horizon_min} min, below 3.9" in decision.message
    # a forecast that came and went does not count
    again = LowEpisodes()
    assert step(again, patient, 0, 4.6, slow) is None
    assert step(again, patient, 5, 4.6, Forecast(4.2, 4.1, -0.01, 4.0)) is None
    assert step(again, patient, 10, 4.6, slow) is None


def test_a_fast_fall_or_a_reading_already_low_needs_no_second_forecast() -> None:
    fast = Forecast(low=3.0, urgent=3.0, rate=-DEFAULT_LOW.steep_rate, far=2.6)
    assert step(LowEpisodes(), uuid4(), 0, 6.5, fast) is Stage.PREDICTED
    assert step(LowEpisodes(), uuid4(), 0, 3.8, Forecast(3.7, 3.6, -0.01, 3.5)) is Stage.PREDICTED


def test_below_the_low_line_the_urgent_forecast_looks_further_ahead() -> None:
    f = Forecast(low=3.3, urgent=3.1, rate=-0.02, far=2.9)
    episodes, patient = LowEpisodes(), uuid4()
    decision = episodes.step(patient, T0, 3.7, None, DEFAULT_LOW, cgm=True, forecast=f, device="cgm-1")
    assert decision is not None and decision.stage is Stage.URGENT_SOON
    assert f"forecast 2.9 mmol/L within {DEFAULT_LOW.urgent_far_min} min, below 3.0" in decision.message
    # above the low line the urgent forecast keeps its own horizon: a predicted low, confirmed
    above, patient = LowEpisodes(), uuid4()
    assert step(above, patient, 0, 4.2, f) is None
    assert step(above, patient, 5, 4.2, f) is Stage.PREDICTED


def test_the_drop_rule_ignores_other_devices_and_gaps() -> None:
    episodes, patient = LowEpisodes(), uuid4()
    cfg = replace(DEFAULT_LOW, urgent_near=None)
    flat = Forecast(5.0, 5.0, -0.01, 5.0)
    episodes.step(patient, T0, 6.0, None, cfg, cgm=True, forecast=flat, device="cgm-1")
    other = episodes.step(
        patient, T0 + timedelta(minutes=5), 4.4, None, cfg, cgm=True, forecast=flat, device="cgm-2"
    )
    assert other is None
    late = episodes.step(
        patient, T0 + timedelta(minutes=30), 3.95, None, cfg, cgm=True, forecast=flat, device="cgm-2"
    )
    assert late is None


def test_ar2s_urgent_low_is_a_floor_under_the_engine() -> None:
    """Glucose hovering in the high 3s, then 3.6: the filter sees it flat, so no forecast rule
    and no near-urgent reading fires; Nightscout's AR2 on the last two readings says urgent low,
    and so does the engine, at that reading."""
    values = [3.8, 3.7, 3.8, 3.7, 3.8, 3.6]
    alarm = ar2.check((20, 3.8), (25, 3.6))
    assert (alarm.level, alarm.event) == ("urgent", "low")
    raised = Ward().feed(glucose(uuid4(), values))
    assert [(a.seq, a.severity) for a in raised if a.severity is U] == [(5, U)], raised
    message = raised[-1].message
    assert message.startswith("Glucose urgent low soon: 3.6 mmol/L now; AR2 forecast 3.4 mmol/L"), message
    assert "within 20 min, below 3.9" in message, message
    old = Ward()
    old.engine = ThresholdEngine(rules_for(Thresholds(glucose_ar2_floor=False)))
    assert [a for a in old.feed(glucose(uuid4(), values)) if a.severity is U] == []


def test_the_ar2_floor_never_fires_on_a_rate_beyond_the_physiological_bound() -> None:
    """5.0 to 3.3 in 5 minutes (0.34 mmol/L/min) is urgent for AR2; for the floor it is noise."""
    assert ar2.check((0, 5.0), (5, 3.3)).level == "urgent"
    five = [(T0, 5.0), (T0 + timedelta(minutes=5), 3.3)]
    assert ar2.urgent_low(five, 3.9, MAX_PHYSIOLOGICAL_RATE) is None
    # a pair that is itself slow but whose first reading jumped: the jump is noise too
    jumped = [(T0 + timedelta(minutes=5 * i), v) for i, v in enumerate([6.0, 6.0, 3.8, 3.6])]
    assert ar2.check((10, 3.8), (15, 3.6)).level == "urgent"
    assert ar2.urgent_low(jumped, 3.9, MAX_PHYSIOLOGICAL_RATE) is None
    assert ar2.urgent_low(jumped[2:], 3.9, MAX_PHYSIOLOGICAL_RATE) == 3.39  # 61 mg/dL
    # through the engine: the floor adds nothing to what the other rules make of the jump
    raised = Ward().feed(glucose(uuid4(), [6.0, 6.0, 6.0, 6.0, 3.8, 3.6]))
    assert raised and not any("AR2" in a.message for a in raised), raised


def test_the_ar2_floor_is_per_patient_and_on_by_default() -> None:
    assert Thresholds().glucose_ar2_floor and DEFAULT_LOW.ar2_floor
    assert rules_for(Thresholds(glucose_ar2_floor=False))[0].ar2_floor is False
