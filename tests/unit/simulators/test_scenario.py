"""Every shipped scenario's expected alerts are what the alert engine raises on its readings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid5

import pytest

from processor.alerts.artefact import ArtefactFilter
from processor.alerts.engine import Act, ThresholdEngine
from processor.alerts.glucose import EpisodeView, Stage
from processor.alerts.rules import Severity, rules_for
from processor.alerts.trend import TrendTracker
from processor.normalise import Quality, normalise
from simulators.scenario import Scenario, load, names, readings
from telehealth.contracts import AcceptedReading, Observation

DAY0 = datetime(2026, 11, 23, tzinfo=UTC)
NS = UUID(int=7)


def raised_by_engine(
    scenario: Scenario, seed: int = 1, artefacts: dict[str, int] | None = None
) -> set[tuple[int, str, str]]:
    """Run the scenario's readings, on time, through normalisation, artefact filter, trend and
    threshold engine; `artefacts` counts labelled, flagged and both."""
    engine, trends, filter_ = ThresholdEngine(), TrendTracker(), ArtefactFilter()
    counts = artefacts if artefacts is not None else {}
    patients = {i: uuid5(NS, str(i)) for i in range(len(scenario.patients))}
    index = {v: k for k, v in patients.items()}
    rules = {
        patients[i]: rules_for(spec.thresholds)
        for i, spec in enumerate(scenario.patients)
        if spec.thresholds is not None
    }
    open_now: dict[tuple[UUID, str], Severity] = {}
    worst: dict[tuple[int, str], Severity] = {}
    for seq, sample in enumerate(readings(scenario, seed=seed)):
        at = DAY0 + timedelta(minutes=sample.minute)
        reading = AcceptedReading(
            device_id=f"{sample.kind}-{sample.patient}",
            seq=seq,
            measured_at=at,
            received_at=at,
            observations=[Observation(**o) for o in sample.observations],
            context=sample.context,
        )
        obs = normalise(
            reading,
            patients[sample.patient],
            late_after=timedelta(minutes=10),
            future_tolerance=timedelta(minutes=5),
            device_kind=sample.kind,
        )
        marked = filter_.mark(obs, reading.context)
        obs = marked.observations
        flagged = any(Quality.ARTEFACT in o.quality for o in obs)
        for name, hit in (
            ("labelled", sample.artefact),
            ("flagged", flagged),
            ("both", sample.artefact and flagged),
        ):
            counts[name] = counts.get(name, 0) + hit
        for action in engine.evaluate(obs + marked.derived + trends.derive(obs), open_now, rules):
            key = (action.patient_id, action.rule)
            if action.act is Act.RESOLVE:
                open_now.pop(key, None)
                continue
            open_now[key] = action.severity
            label = (index[action.patient_id], action.rule)
            if label not in worst or action.severity.rank > worst[label].rank:
                worst[label] = action.severity
    return {(p, rule, sev.value) for (p, rule), sev in worst.items()}


#: Raised from device status, not from readings: checked through the live pipeline (test_fleet).
DEVICE_RULES = {"device_offline", "battery_low", "stale_data"}


@pytest.mark.parametrize("name", names())
def test_expected_alerts_agree_with_the_alert_engine(name: str) -> None:
    scenario = load(name)
    expected = {
        (e.patient, e.rule, e.severity) for e in scenario.expected_alerts if e.rule not in DEVICE_RULES
    }
    artefacts: dict[str, int] = {}
    assert raised_by_engine(scenario, artefacts=artefacts) == expected
    assert artefacts.get("labelled", 0) == artefacts.get("flagged", 0) == artefacts.get("both", 0), artefacts


def test_the_shipped_scenarios_show_artefacts_and_none_alarms() -> None:
    """Motion artefacts are on in the scenarios: each is flagged, and none raised an SpO2 alert."""
    for name in names():
        artefacts: dict[str, int] = {}
        raised = raised_by_engine(load(name), artefacts=artefacts)
        assert artefacts["labelled"] > 0, name
        assert artefacts["flagged"] == artefacts["labelled"] == artefacts["both"], (name, artefacts)
        assert not {r for r in raised if r[1] in ("spo2_low", "pulse")}, (name, raised)


def test_a_seeded_scenario_is_reproducible() -> None:
    scenario = load("hypo")
    first = [(s.minute, s.kind, s.observations) for s in readings(scenario, seed=3)]
    again = [(s.minute, s.kind, s.observations) for s in readings(scenario, seed=3)]
    other = [(s.minute, s.kind, s.observations) for s in readings(scenario, seed=4)]
    assert first == again and first != other


def test_unknown_scenario_names_the_shipped_ones() -> None:
    with pytest.raises(ValueError, match="hypo"):
        load("no-such-scenario")


def test_the_hypo_demo_is_warned_before_each_line_is_crossed() -> None:
    """Patient 0's overdose: one alert, opened by the forecast before the first CGM reading
    below 3.9, urgent before the first below 3.0."""
    engine, trends, patient = ThresholdEngine(), TrendTracker(), uuid5(NS, "0")
    first_below: dict[float, datetime] = {}
    first_stage: dict[str, datetime] = {}
    open_now: dict[tuple[UUID, str], Severity] = {}
    views: dict[UUID, EpisodeView] = {}
    acts = []
    for seq, sample in enumerate(readings(load("hypo"), seed=1)):
        if sample.patient != 0 or sample.kind != "cgm":
            continue
        at = DAY0 + timedelta(minutes=sample.minute)
        reading = AcceptedReading(
            device_id="cgm-0",
            seq=seq,
            measured_at=at,
            received_at=at,
            observations=[Observation(**o) for o in sample.observations],
        )
        obs = normalise(
            reading,
            patient,
            late_after=timedelta(minutes=10),
            future_tolerance=timedelta(minutes=5),
            device_kind="cgm",
        )
        for line in (3.9, 3.0):
            if obs[0].value < line:
                first_below.setdefault(line, at)
        for action in engine.evaluate(obs + trends.derive(obs), open_now, None, views):
            open_now[(patient, action.rule)] = action.severity
            views[patient] = EpisodeView(Stage.of(action.severity, action.code), False, at)
            acts.append(action.act)
            first_stage.setdefault(action.severity.value, at)
            if action.act is Act.OPEN:
                assert action.code == "glucose_forecast", action.message
    assert acts[0] is Act.OPEN and Act.OPEN not in acts[1:], "one alert for the episode"
    assert min(first_stage.values()) < first_below[3.9]  # the fall is steep: it opens as urgent soon
    assert first_stage["urgent"] < first_below[3.0]


def live_run(
    scenario: Scenario, patients: int, minutes: float, seed: int = 1
) -> list[tuple[float, int, str]]:
    """What the engine raises in the first `minutes` of a live run of the scenario, as `telehealth
    up` plays it: at true rates from `start_min`, after the devices upload the half hour before
    (readings older than 10 minutes arrive late). (minute of the live run, patient, rule)."""
    from simulators.scenario import HISTORY_MIN, START_MIN

    start = START_MIN + scenario.start_min
    engine, trends, filter_ = ThresholdEngine(), TrendTracker(), ArtefactFilter()
    ids = {i: uuid5(NS, str(i)) for i in range(max(patients, len(scenario.patients)))}
    index = {v: k for k, v in ids.items()}
    rules = {ids[i]: rules_for(t) for i in ids if (t := scenario.patient(i).thresholds) is not None}
    open_now: dict[tuple[UUID, str], Severity] = {}
    raised = []
    for seq, sample in enumerate(readings(scenario, seed=seed, patients=patients)):
        if sample.minute > start + minutes:
            break
        if sample.minute < start - min(HISTORY_MIN, scenario.start_min):
            continue
        at = DAY0 + timedelta(minutes=sample.minute)
        reading = AcceptedReading(
            device_id=f"{sample.kind}-{sample.patient}",
            seq=seq,
            measured_at=at,
            received_at=max(at, DAY0 + timedelta(minutes=start)),  # the history arrives at the start
            observations=[Observation(**o) for o in sample.observations],
            context=sample.context,
        )
        obs = normalise(
            reading,
            ids[sample.patient],
            late_after=timedelta(minutes=10),
            future_tolerance=timedelta(minutes=5),
            device_kind=sample.kind,
        )
        marked = filter_.mark(obs, reading.context)
        derived = trends.derive(marked.observations)
        for action in engine.evaluate(marked.observations + marked.derived + derived, open_now, rules):
            open_now[(action.patient_id, action.rule)] = action.severity
            if action.act is Act.RESOLVE:
                del open_now[(action.patient_id, action.rule)]
            else:
                raised.append((max(sample.minute, start) - start, index[action.patient_id], action.rule))
    return raised


def test_the_demo_runs_at_true_rates_quiet_patients_stay_quiet_and_the_hypo_shows_at_once() -> None:
    """`telehealth up`'s default cohort (20 patients, scenario hypo, speed 1): over its first
    15 minutes no alert for anyone but patient 0, whose low is warned within 2 minutes."""
    raised = live_run(load("hypo"), patients=20, minutes=15)
    assert {p for _, p, _ in raised} == {0}, raised
    first = min(minute for minute, p, rule in raised if p == 0 and rule == "glucose_low")
    assert first <= 2, raised
