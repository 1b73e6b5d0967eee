"""Clinical cases for hypoglycaemia as episodes, the CGM trend, artefacts and the AR2 port."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from bench import clinical
from processor.alerts import ar2
from processor.alerts.artefact import ArtefactFilter
from processor.alerts.engine import Act, Action, ThresholdEngine
from processor.alerts.glucose import DEFAULT_LOW, FORECAST_CODE, LEVEL_CODE, ROC_CODE, EpisodeView, Stage
from processor.alerts.rules import Severity
from processor.alerts.trend import TrendTracker, kalman_trend, project
from processor.normalise import NormalisedObservation, Quality, normalise
from telehealth.contracts import AcceptedReading, Observation

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
U, W = Severity.URGENT, Severity.WARNING


def glucose(
    patient: UUID,
    values: list[float],
    every_min: float = 5,
    start: int = 0,
    source: str | None = "cgm",
    late: bool = False,
) -> list[NormalisedObservation]:
    out = []
    for i, v in enumerate(values):
        at = T0 + timedelta(minutes=(start + i) * every_min)
        received = at + timedelta(minutes=30) if late else at
        quality = (Quality.LATE,) if late else ()
        out.append(
            NormalisedObservation(
                patient, "cgm-1", start + i, at, received, "glucose", v, "mmol/L", "", source, quality
            )
        )
    return out


class Ward:
    """The engine, trend and a simulated alert table, one reading at a time."""

    def __init__(self) -> None:
        self.engine, self.trends = ThresholdEngine(), TrendTracker()
        self.open: dict[tuple[UUID, str], Severity] = {}
        self.views: dict[UUID, EpisodeView] = {}
        self.log: list[Action] = []

    def feed(self, obs: list[NormalisedObservation], batch: int = 1) -> list[Action]:
        new = []
        for i in range(0, len(obs), batch):
            chunk = obs[i : i + batch]
            for a in self.engine.evaluate(chunk + self.trends.derive(chunk), self.open, None, self.views):
                new.append(a)
                if a.act is Act.RESOLVE:
                    self.open.pop((a.patient_id, a.rule), None)
                    self.views.pop(a.patient_id, None)
                else:
                    self.open[(a.patient_id, a.rule)] = a.severity
                    acknowledged = self.views.get(a.patient_id, None)
                    ack = acknowledged.acknowledged if acknowledged and a.act is not Act.RENOTIFY else False
                    self.views[a.patient_id] = EpisodeView(Stage.of(a.severity, a.code), ack, a.measured_at)
        self.log += new
        return new

    def acknowledge(self, patient: UUID) -> None:
        view = self.views[patient]
        self.views[patient] = EpisodeView(view.stage, True, view.triggered_at)


def acts(actions: list[Action]) -> list[tuple[Act, Severity, str]]:
    return [(a.act, a.severity, a.code) for a in actions]


def test_hovering_just_under_the_line_is_flagged_once_and_does_not_flap() -> None:
    patient, ward = uuid4(), Ward()
    hovering = [3.8, 4.0] * 12  # 5-minutely, never two lows in a row; a glucose device with no trend
    actions = ward.feed(glucose(patient, hovering, source=None))
    assert acts(actions) == [(Act.OPEN, W, "glucose")], "flagged once, after 15 min"
    assert actions[0].measured_at - T0 == timedelta(minutes=20)  # 3.8 at 0, 10, 20: 15 min reached
    assert "below 3.9 for 20 min" in actions[0].message


def test_the_minimum_duration_is_a_per_patient_threshold() -> None:
    from processor.alerts.rules import rules_for
    from telehealth.thresholds import Thresholds

    patient = uuid4()
    engine = ThresholdEngine(rules_for(Thresholds(glucose_low_minutes=30)))
    obs = glucose(patient, [3.8, 4.0] * 3, source=None)  # 3.8 from 0 to 20 min
    assert engine.evaluate(obs, {}) == []
    assert [a.act for a in engine.evaluate(glucose(patient, [3.8], start=6, source=None), {})] == [Act.OPEN]


def test_one_episode_is_one_alert_upgraded_through_its_stages() -> None:
    patient, ward = uuid4(), Ward()
    fall = [6.0, 5.6, 5.2, 4.8, 4.4, 4.0, 3.7, 3.4, 3.1, 2.8, 2.6]
    actions = ward.feed(glucose(patient, fall))
    stages = [Stage.of(a.severity, a.code) for a in actions]
    assert actions[0].act is Act.OPEN and all(a.act is Act.UPGRADE for a in actions[1:])
    assert stages == sorted(stages) and stages[-1] is Stage.URGENT
    assert Stage.PREDICTED in stages and Stage.URGENT_SOON in stages
    first_urgent = next(a for a in actions if a.severity is U)
    assert first_urgent.code == FORECAST_CODE, "urgent low is warned before the first reading < 3.0"
    assert min(o.value for o in glucose(patient, fall) if o.measured_at <= first_urgent.measured_at) > 3.0
    assert f"within {DEFAULT_LOW.urgent_horizon_min} min" in first_urgent.message
    assert "mmol/L" in first_urgent.message


def test_a_new_severe_low_after_the_episode_ended_is_a_new_urgent_alert() -> None:
    patient, ward = uuid4(), Ward()
    ward.feed(glucose(patient, [2.8, 2.9], every_min=5))
    recovered = ward.feed(glucose(patient, [4.6] * 4, start=2))
    assert [a.act for a in recovered] == [Act.RESOLVE]
    again = ward.feed(glucose(patient, [2.7], start=6, source="smbg"))
    assert acts(again) == [(Act.OPEN, U, "glucose")]


def test_a_repeated_urgent_low_inside_an_acknowledged_episode_renotifies() -> None:
    patient, ward = uuid4(), Ward()
    ward.feed(glucose(patient, [2.8], source="smbg"))
    ward.acknowledge(patient)
    # up to 3.4 (still below 3.9: the episode goes on) for 15 min, then down again
    middle = ward.feed(glucose(patient, [3.2, 3.4, 3.4, 3.3], start=1, source="smbg"))
    assert middle == []
    again = ward.feed(glucose(patient, [2.9], start=5, source="smbg"))
    assert acts(again) == [(Act.RENOTIFY, U, "glucose")]
    assert "again" in again[0].message
    # a dip that never left the urgent range is the same severe low: nothing new
    assert ward.feed(glucose(patient, [2.8, 3.1, 2.9], start=6, source="smbg")) == []


def test_a_late_partly_backfilled_fall_is_forecast_when_a_live_reading_arrives() -> None:
    patient, ward = uuid4(), Ward()
    late = glucose(patient, [6.4, 5.9, 5.4, 4.9], late=True)
    live = glucose(patient, [4.5, 4.1], start=4)
    actions = ward.feed(late + live, batch=6)  # a backlog upload: one batch
    assert actions[0].act is Act.OPEN and actions[0].code == FORECAST_CODE
    assert all(a.act is Act.UPGRADE for a in actions[1:])
    assert {a.seq for a in actions} <= {o.seq for o in live}, "only live readings raise alerts"
    # late readings alone never open anything
    assert Ward().feed(glucose(uuid4(), [6.2, 5.8, 5.4, 5.0, 4.6, 4.2, 3.8, 3.4, 3.0, 2.6], late=True)) == []


def test_the_forecast_is_clamped_to_what_a_cgm_reports() -> None:
    def forecasts(values: list[float]) -> list[float]:
        derived = {(o.seq, o.code): o.value for o in TrendTracker().derive(glucose(uuid4(), values))}
        return [
            project(derived[seq, LEVEL_CODE], derived[seq, ROC_CODE], DEFAULT_LOW.horizon_min)
            for seq, code in derived
            if code == LEVEL_CODE
        ]

    falling = forecasts([6.0, 5.0, 4.0, 3.0, 2.4])
    assert falling and min(falling) == 2.2
    # a fast but physiological rise (0.25 mmol/L/min) would pass the top of the range
    assert max(forecasts([17.0, 18.25, 19.5, 20.75, 22.0])) == 22.2
    assert project(1.0, -0.1, 25) == 2.2  # a level below the range stays at its floor


def test_the_filtered_trend_resists_one_noisy_reading() -> None:
    steady = [(float(m), 6.0) for m in range(0, 30, 5)]
    spike = [*steady[:-1], (25.0, 5.2)]
    _, rate = kalman_trend(spike)
    naive = (5.2 - 6.0) / 5  # the last two points, AR2-style
    assert abs(rate) < abs(naive) / 2


def test_the_provisioned_device_kind_decides_what_is_cgm_data() -> None:
    reading = AcceptedReading(
        device_id="cgm-1",
        seq=1,
        measured_at=T0,
        received_at=T0,
        observations=[Observation(code="glucose", value=5.0, unit="mmol/L")],
    )
    late, future = timedelta(minutes=10), timedelta(minutes=5)
    (from_cgm,) = normalise(reading, uuid4(), late_after=late, future_tolerance=future, device_kind="cgm")
    assert from_cgm.source == "cgm" and from_cgm.loinc == "105272-9"
    claims = reading.model_copy(
        update={"observations": [Observation(code="glucose", value=5.0, unit="mmol/L", source="cgm")]}
    )
    (meter,) = normalise(claims, uuid4(), late_after=late, future_tolerance=future, device_kind="glucometer")
    assert meter.source == "smbg", "a meter saying 'cgm' is still a meter"


def oximetry(values: list[tuple[float, float]], contexts: list[dict[str, float]] | None = None) -> list[bool]:
    """(minute, spo2) readings through the filter; whether each was flagged."""
    f, flagged = ArtefactFilter(), []
    patient = uuid4()
    for i, (minute, v) in enumerate(values):
        at = T0 + timedelta(minutes=minute)
        obs = [
            NormalisedObservation(patient, "oxi-1", i, at, at, "spo2", v, "%", "", None, ()),
            NormalisedObservation(patient, "oxi-1", i, at, at, "pulse", 80, "/min", "", None, ()),
        ]
        marked = f.mark(obs, (contexts or [{}] * len(values))[i]).observations
        assert len({Quality.ARTEFACT in o.quality for o in marked}) == 1, "spo2 and pulse together"
        flagged.append(Quality.ARTEFACT in marked[0].quality)
    return flagged


@pytest.mark.parametrize(
    ("values", "contexts", "expected"),
    [
        ([(0, 97), (1, 84), (2, 97)], None, [False, True, False]),
        ([(0, 97), (1, 84), (2, 84)], None, [False, True, False]),  # persists: credible
        ([(0, 97), (1, 95), (2, 93), (3, 91), (4, 89)], None, [False] * 5),  # gradual: real
        ([(0, 97), (1, 96)], [{}, {"perfusion_index": 0.1}], [False, True]),
        ([(0, 97), (1, 96)], [{}, {"signal_quality": 20}], [False, True]),
        ([(0, 97), (9, 84)], None, [False, False]),  # no recent predecessor: a first reading
        # a weak-signal low confirmed by the next reading is credible (at most one reading of delay)
        ([(0, 97), (1, 82), (2, 81)], [{}, {"perfusion_index": 0.1}, {}], [False, True, False]),
    ],
)
def test_motion_artefacts(
    values: list[tuple[float, float]], contexts: list[dict[str, float]] | None, expected: list[bool]
) -> None:
    assert oximetry(values, contexts) == expected


def test_artefacts_never_alarm_but_a_credible_low_does_at_once() -> None:
    patient = uuid4()
    f, engine = ArtefactFilter(), ThresholdEngine()

    def spo2(i: int, v: float, context: dict[str, float] | None = None) -> list[Action]:
        at = T0 + timedelta(minutes=i)
        obs = [NormalisedObservation(patient, "oxi-1", i, at, at, "spo2", v, "%", "", None, ())]
        marked = f.mark(obs, context or {})
        return engine.evaluate(marked.observations + marked.derived, {})

    assert spo2(0, 97) == [] and spo2(1, 84) == [] and spo2(2, 97) == []
    assert spo2(3, 80, {"perfusion_index": 0.05}) == []
    actions = spo2(4, 96) + spo2(5, 93) + spo2(6, 91)
    assert [(a.act, a.severity, a.value) for a in actions] == [(Act.OPEN, U, 91)]


def test_ar2_port_matches_nightscout() -> None:
    # steady at 100 mg/dL: the AR(2) model stays near it and raises nothing
    steady = ar2.forecast((0, 100), (5, 100))
    assert steady is not None and steady[0][0] == 100 and steady[1] < ar2.WARN_THRESHOLD
    # 100 -> 90 mg/dL: AR2's damped forecast levels off at 75, above 70: no alarm
    assert ar2.check((0, 100 / 18.01559), (5, 90 / 18.01559)).level is None
    # 90 -> 75 mg/dL: predictions 66, 61, 57, 55 (20 min), 54, 54; loss 0.12: urgent low
    falling = ar2.check((0, 90 / 18.01559), (5, 75 / 18.01559))
    assert falling.event == "low" and falling.level == "urgent"
    assert falling.predicted_mgdl == (66, 61, 57, 55, 54, 54)
    assert list(falling.predicted_mgdl) == sorted(falling.predicted_mgdl, reverse=True)
    # 10 minutes between readings: interpolated back to 5 minutes as delta.js does
    assert ar2._mgdl_5_mins_ago((0, 100), (10, 80)) == 90
    assert ar2.forecast((0, 30), (5, 100)) is None


def test_consensus_episodes() -> None:
    r = [
        (float(5 * i), v)
        for i, v in enumerate([5, 3.8, 3.7, 3.6, 4.0, 3.5, 4.0, 4.1, 4.2, 2.9, 2.9, 2.8, 4.0, 4.0, 4.0])
    ]
    assert clinical.episodes(r, 3.9) == [clinical.Episode(5, 30), clinical.Episode(45, 60)]
    assert clinical.episodes(r, 3.0) == [clinical.Episode(45, 60)]
    assert clinical.episodes([(0.0, 3.8), (5.0, 3.8), (10.0, 4.5)], 3.9) == []


@pytest.mark.timeout(900)  # the UVA/Padova model integrates its equations minute by minute
def test_bench_clinical_prints_both_alarms_side_by_side_on_both_cohorts(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from bench.cli import main  # what `telehealth bench` hands over to (as `python -m bench`)

    main(
        [
            "--clinical",
            "--clinical-patients",
            "2",
            "--clinical-days",
            "1",
            "--clinical-seed",
            "3",
            "--clinical-curve",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out
    headers = [line for line in out.splitlines() if "this engine" in line]
    assert len(headers) == 2 and all("Nightscout AR2" in h for h in headers), out
    assert "the project's simulator" in out and "UVA/Padova virtual patients" in out
    for row in (
        "low-side alerts per patient-day",
        "false low alerts (no episode within 30 min)",
        "level 1 warned before onset",
        "level 1 median lead before the first reading < 3.9",
        "level 2: urgent relative to the first reading < 3.0",
        "level 2: urgent >= 10 min before onset",
        "level 2 episodes that got no new urgent alert",
    ):
        assert sum(line.startswith(f"| {row} ") for line in out.splitlines()) == 2, (row, out)
    assert out.count("| 3.9 in 20 min |") == 2 and out.count("| AR2 |") == 2, out
    result = clinical.run(4, 2, 3)
    assert result.l1_episodes > 0 and all(s.alerts > 0 for s in result.scores), result.report()
    assert "2 patients x 1 days" in out and out.count("CGM every 5 min") == 2, out
