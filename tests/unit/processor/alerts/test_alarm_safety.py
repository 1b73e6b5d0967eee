"""Safety before quiet: no filter or episode rule keeps a possible emergency silent for more
than one reading (docs/alerts.md). Pulse oximetry and glucose cases, and the property."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from hypothesis import example, given
from hypothesis import strategies as st

from processor.alerts import ar2
from processor.alerts.artefact import ArtefactFilter
from processor.alerts.engine import Act, Action, ThresholdEngine
from processor.alerts.glucose import (
    DEFAULT_LOW,
    MAX_PHYSIOLOGICAL_RATE,
    Decision,
    EpisodeView,
    Forecast,
    LowEpisodes,
    Stage,
)
from processor.alerts.rules import Severity
from processor.alerts.trend import TrendTracker
from processor.normalise import NormalisedObservation, Quality, normalise
from telehealth.contracts import AcceptedReading, Observation

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
U, W = Severity.URGENT, Severity.WARNING


class Oximetry:
    """An oximeter's readings through normalisation, the artefact filter and the engine."""

    def __init__(self) -> None:
        self.patient, self.filter, self.engine = uuid4(), ArtefactFilter(), ThresholdEngine()
        self.open: dict[tuple[UUID, str], Severity] = {}
        self.seq = 0

    def read(self, minute: float, spo2: float, **context: Any) -> list[Action]:
        self.seq += 1
        at = T0 + timedelta(minutes=minute)
        reading = AcceptedReading(
            device_id="oxi-1",
            seq=self.seq,
            measured_at=at,
            received_at=at,
            observations=[Observation(code="spo2", value=spo2, unit="%")],
            context=context,
        )
        obs = normalise(
            reading,
            self.patient,
            late_after=timedelta(minutes=10),
            future_tolerance=timedelta(minutes=5),
            device_kind="oximeter",
        )
        marked = self.filter.mark(obs, context)
        actions = self.engine.evaluate(marked.observations + marked.derived, self.open)
        for a in actions:
            if a.act is Act.RESOLVE:
                self.open.pop((a.patient_id, a.rule), None)
            else:
                self.open[(a.patient_id, a.rule)] = a.severity
        return actions

    def series(self, values: list[float], every_min: float = 1) -> list[tuple[float, Action]]:
        """(minute, action) for each action the series raised."""
        return [(i * every_min, a) for i, v in enumerate(values) for a in self.read(i * every_min, v)]


def first_urgent(raised: list[tuple[float, Action]], rule: str = "spo2_low") -> float | None:
    return next(
        (m for m, a in raised if a.rule == rule and a.severity is U and a.act is not Act.RESOLVE), None
    )


def test_a_desaturation_of_6_points_a_minute_alarms_within_one_reading_of_the_urgent_line() -> None:
    values = [96, 90, 84, 78, 72, 66, 60]
    raised = Oximetry().series(values)
    crossed = next(i for i, v in enumerate(values) if v <= 91)
    assert first_urgent(raised) is not None and first_urgent(raised) <= crossed + 1, raised


def test_a_stepwise_decline_every_5_minutes_is_never_silent() -> None:
    values = [97, 90, 83, 76, 70]
    raised = Oximetry().series(values, every_min=5)
    assert first_urgent(raised) is not None and first_urgent(raised) <= 10, raised  # 90 at 5, 83 at 10


def test_alternating_dips_are_a_cyclic_desaturation_warning() -> None:
    raised = Oximetry().series([97, 88, 97, 88, 97, 88])
    dips = [(m, a) for m, a in raised if a.rule == "spo2_dips"]
    assert dips and dips[0][1].act is Act.OPEN and dips[0][1].severity is W, raised
    assert dips[0][0] <= 3, "the second dip within 10 minutes warns"
    assert "2 dips to 90 % or below" in dips[0][1].message


def test_a_single_dip_that_recovers_at_once_is_an_artefact_with_no_alarm() -> None:
    ox = Oximetry()
    assert ox.series([97, 84, 97, 96, 97]) == []


def test_spread_out_dips_and_dips_the_oximeter_marks_as_poor_signal_are_not_cyclic() -> None:
    ox = Oximetry()
    assert [a for m, a in ox.series([97, 86, 97] + [97] * 10 + [86, 97]) if a.rule == "spo2_dips"] == []
    ox = Oximetry()
    acts = ox.read(0, 97) + ox.read(1, 86, perfusion_index=0.1) + ox.read(2, 97) + ox.read(3, 86, motion=True)
    assert acts == []


def test_spo2_below_50_is_an_urgent_check_patient_and_sensor_alert_at_once() -> None:
    ox = Oximetry()
    assert ox.read(0, 96) == []
    [alert] = ox.read(1, 42)
    assert (alert.act, alert.rule, alert.severity) == (Act.OPEN, "spo2_low", U)
    assert "check patient and sensor" in alert.message


def test_a_weak_signal_low_confirmed_by_the_next_reading_alarms() -> None:
    ox = Oximetry()
    assert ox.read(0, 96) == [] and ox.read(1, 84, perfusion_index=0.1) == []
    assert [(a.rule, a.severity) for a in ox.read(2, 84, perfusion_index=0.1)] == [("spo2_low", U)]


@given(
    start=st.integers(min_value=94, max_value=100),
    steps=st.lists(st.integers(min_value=0, max_value=15), min_size=1, max_size=30),
    every_min=st.sampled_from([1, 2, 5]),
)
def test_any_desaturation_to_the_urgent_line_alarms_within_one_reading(
    start: int, steps: list[int], every_min: int
) -> None:
    """Whatever the path down (0-15 points a reading, any interval), once SpO2 is at or below
    91 % an urgent alert is open by the next reading at the latest."""
    values = [start]
    for step in steps:
        values.append(max(values[-1] - step, 50))
    values.append(values[-1])  # the confirming reading
    crossed = next((i for i, v in enumerate(values) if v <= 91), None)
    if crossed is None:
        return
    raised = Oximetry().series(values, every_min)
    at = first_urgent(raised)
    assert at is not None and at <= (crossed + 1) * every_min, (values, raised)


# ---- glucose ------------------------------------------------------------------------------


def glucose(
    patient: UUID, values: list[float], *, every_min: float = 5, start: int = 0, source: str | None = "cgm"
) -> list[NormalisedObservation]:
    return [
        NormalisedObservation(
            patient,
            f"{source}-1",
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


class Ward:
    """The engine and trend with a simulated alert table (views as the database keeps them)."""

    def __init__(self) -> None:
        self.engine, self.trends = ThresholdEngine(), TrendTracker()
        self.open: dict[tuple[UUID, str], Severity] = {}
        self.views: dict[UUID, EpisodeView] = {}

    def feed(self, obs: list[NormalisedObservation]) -> list[Action]:
        out = []
        for o in obs:
            for a in self.engine.evaluate([o, *self.trends.derive([o])], self.open, None, self.views):
                out.append(a)
                if a.act is Act.RESOLVE:
                    self.open.pop((a.patient_id, a.rule), None)
                    self.views.pop(a.patient_id, None)
                else:
                    self.open[(a.patient_id, a.rule)] = a.severity
                    self.views[a.patient_id] = EpisodeView(Stage.of(a.severity, a.code), False, a.measured_at)
        return out

    def acknowledge(self, patient: UUID, at: datetime) -> None:
        view = self.views[patient]
        self.views[patient] = EpisodeView(view.stage, True, view.triggered_at, at)


def test_a_finger_prick_below_the_low_line_alerts_at_once_and_below_3_is_urgent() -> None:
    patient, ward = uuid4(), Ward()
    [low] = ward.feed(glucose(patient, [3.5], source="smbg"))
    assert (low.act, low.severity, low.code) == (Act.OPEN, W, "glucose") and "finger-prick" in low.message
    [urgent] = ward.feed(glucose(patient, [2.8], start=1, source="smbg"))
    assert (urgent.act, urgent.severity) == (Act.UPGRADE, U)


def test_readings_hours_apart_are_not_consecutive() -> None:
    """Two SpO2 warnings two hours apart (spot checks) are not "2 consecutive readings"."""
    patient = uuid4()
    engine = ThresholdEngine()
    first = NormalisedObservation(patient, "oxi-1", 1, T0, T0, "spo2", 92, "%", "", None, ())
    later = T0 + timedelta(hours=2)
    second = NormalisedObservation(patient, "oxi-1", 2, later, later, "spo2", 92, "%", "", None, ())
    assert engine.evaluate([first], {}) == [] and engine.evaluate([second], {}) == []
    soon = later + timedelta(minutes=5)
    third = NormalisedObservation(patient, "oxi-1", 3, soon, soon, "spo2", 92, "%", "", None, ())
    assert [(a.act, a.severity) for a in engine.evaluate([third], {})] == [(Act.OPEN, W)]


def test_an_acknowledged_urgent_low_still_below_3_renotifies_after_30_minutes() -> None:
    patient, ward = uuid4(), Ward()
    ward.feed(glucose(patient, [2.8]))
    ward.acknowledge(patient, T0 + timedelta(minutes=1))
    quiet = ward.feed(glucose(patient, [2.7] * 5, start=1))  # 5 to 25 min
    assert quiet == []
    [again] = ward.feed(glucose(patient, [2.7], start=7))  # 35 min: 34 after the acknowledgement
    assert (again.act, again.severity) == (Act.RENOTIFY, U)
    assert "acknowledged" in again.message
    assert ward.feed(glucose(patient, [2.7], start=8)) == [], "once per acknowledgement"


def test_a_new_dip_inside_a_still_open_alert_is_notified_again() -> None:
    """A dip; 15 min back above 3.9 while the forecast still says low (the alert stays open,
    acknowledged); then the next dip: a notification of its own."""
    episodes, patient = LowEpisodes(), uuid4()
    view: EpisodeView | None = None

    def step(minute: int, value: float, forecast: float) -> Decision | None:
        nonlocal view
        decision = episodes.step(
            patient,
            T0 + timedelta(minutes=minute),
            value,
            view,
            DEFAULT_LOW,
            cgm=True,
            forecast=Forecast(forecast, forecast, -0.05),
            device="cgm-1",
        )
        if decision is not None and decision.act != "resolve":
            acknowledged = T0 + timedelta(minutes=minute + 1)
            view = EpisodeView(decision.stage, True, T0 + timedelta(minutes=minute), acknowledged)
        return decision

    opened = [step(0, 3.6, 3.0), step(5, 3.5, 3.0)]
    assert opened[0] is not None and opened[0].act == "open"
    above = [step(m, 4.3, 3.5) for m in (10, 15, 20)]  # back above 3.9, forecast still low
    assert all(d is None for d in above), above
    again = step(25, 4.2, 3.5)  # 15 min at or above 3.9: this dip is over; the forecast warns of the next
    assert again is not None and again.act == "renotify" and "new dip" in again.message
    assert step(30, 4.1, 3.5) is None, "once per dip"


def test_a_rate_beyond_physiology_is_noise_not_a_forecast() -> None:
    """A compression low: 7.0 to 3.4 and back within minutes. No forecast alert; a measured
    urgent value would still alarm (it is not forecast)."""
    patient, ward = uuid4(), Ward()
    raised = ward.feed(glucose(patient, [7.2, 7.1, 7.0, 7.0, 5.1, 3.4, 6.8, 7.0]))
    assert [a for a in raised if a.code == "glucose_forecast"] == [], raised
    urgent = Ward().feed(glucose(uuid4(), [7.2, 7.1, 7.0, 7.0, 2.4]))
    assert [(a.act, a.severity) for a in urgent] == [(Act.OPEN, U)]


@given(
    start=st.floats(min_value=4.5, max_value=12.0),
    rates=st.lists(st.floats(min_value=0.0, max_value=MAX_PHYSIOLOGICAL_RATE), min_size=1, max_size=40),
    every_min=st.sampled_from([1, 5, 15]),
    source=st.sampled_from(["cgm", "smbg", None]),
)
def test_any_physiological_decline_below_the_urgent_line_alarms_within_one_reading(
    start: float, rates: list[float], every_min: int, source: str | None
) -> None:
    """A fall at physiological rates (up to 6 mg/dL/min) from any level, read by any glucose
    device at any interval: once a reading is below 3.0, an urgent alert is open at that
    reading (never later than the next)."""
    values = [round(start, 1)]
    for rate in rates:
        values.append(round(max(values[-1] - rate * every_min, 1.0), 1))
    crossed = next((i for i, v in enumerate(values) if v < 3.0), None)
    if crossed is None:
        return
    patient, ward = uuid4(), Ward()
    obs = glucose(patient, values, every_min=every_min, source=source)
    urgent_at = None
    for i, o in enumerate(obs):
        if any(a.severity is U and a.act is not Act.RESOLVE for a in ward.feed([o])):
            urgent_at = i if urgent_at is None else urgent_at
        if i > crossed:
            break
    assert urgent_at is not None and urgent_at <= crossed + 1, values


@given(
    start=st.floats(min_value=3.2, max_value=7.0),
    rates=st.lists(st.floats(min_value=-0.3, max_value=0.3), min_size=2, max_size=30),
)
# an episode opened by the forecast, a rise, then a steep fall: 3.75, 4.75, 4.13, 4.63, 5.82, 4.46
@example(start=3.75, rates=[0.2, -0.124, 0.1, 0.238, -0.272])
def test_the_engine_is_never_later_than_ar2_on_an_urgent_low(start: float, rates: list[float]) -> None:
    """Any CGM trace at physiological rates, every 5 minutes: at every reading where
    Nightscout's AR2 (on the last two readings) says urgent low, the patient's low-glucose
    alert is urgent by then."""
    values = [round(start, 2)]
    for rate in rates:
        values.append(round(max(values[-1] + rate * 5, 2.3), 2))
    patient, ward = uuid4(), Ward()
    for i, o in enumerate(glucose(patient, values)):
        ward.feed([o])
        if i == 0:
            continue
        alarm = ar2.check((5 * i - 5, values[i - 1]), (5 * i, values[i]), 3.9 * 18.01559)
        if alarm.level == "urgent" and alarm.event == "low":
            assert ward.open.get((patient, "glucose_low")) is U, (values, i)


def test_an_episode_does_not_end_on_a_reading_that_ar2_calls_urgent_low() -> None:
    """15 min at or above 3.9 with the filtered forecast calm would end the episode, but the
    reading that completes them falls so steeply that AR2 calls an urgent low: it stays open."""
    values = [3.75, 4.75, 4.13, 4.63, 5.82, 4.46]
    patient, ward = uuid4(), Ward()
    for i, o in enumerate(glucose(patient, values)):
        ward.feed([o])
        if i == 2:
            assert ward.open.get((patient, "glucose_low")) is U  # AR2 urgent low on 4.75 -> 4.13
    assert ar2.check((20, 5.82), (25, 4.46), 3.9 * 18.01559).level == "urgent"
    assert ward.open.get((patient, "glucose_low")) is U


def test_late_values_below_the_plausible_range_never_alarm() -> None:
    """The check-the-sensor net is for live readings: a backlog value stays context."""
    patient = uuid4()
    late = T0 - timedelta(hours=1)
    obs = NormalisedObservation(
        patient, "oxi-1", 1, late, T0, "spo2", 40, "%", "", None, (Quality.LATE, Quality.IMPLAUSIBLE)
    )
    assert ThresholdEngine().evaluate([obs], {}) == []
