"""Threshold alerting with noise control and hysteresis. Pure: no I/O.

Glucose lows are episodes with stages (processor.alerts.glucose); the other rules follow.

Urgent fires on the first breaching reading; a warning needs the rule's `warning_after`
consecutive breaching readings of one device, each within `CONSECUTIVE_WITHIN` of the one
before (a finger-prick glucose reading is deliberate and needs no second one); an alert
resolves itself only once the value is back in range by the rule's margin. Which alerts are
open is the database's truth, passed in per batch, so a restart or a clinician's manual
resolve never leaves the engine believing otherwise; only the breach streaks live here.

Two safety nets that no quality filter can silence:
- a value below what its code can plausibly be (SpO2 under 50 %, pulse under 20/min, glucose
  under 0.5 mmol/L) is flagged `implausible` and stored, and raises an urgent alert on the
  code's rule saying "check patient and sensor";
- `spo2_dips`: SpO2 dipping to the patient's dip line (1 below the urgent line: 90 % on
  NEWS2 scale 1) repeatedly within 10 minutes is a warning (cyclic desaturation), counting
  dips the artefact filter flagged as sudden drops (but not readings the oximeter itself
  reported as poor signal).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from uuid import UUID

from processor.alerts import glucose
from processor.alerts.artefact import FLAGGED_CODE
from processor.alerts.glucose import (
    LEVEL_CODE,
    MEASURED_CODE,
    ROC_CODE,
    EpisodeView,
    LowEpisodes,
    Stage,
)
from processor.alerts.glucose import (
    RULE as LOW_RULE,
)
from processor.alerts.rules import DEFAULT_RULES, DIPS_RULE, Severity, ThresholdRule
from processor.alerts.trend import project
from processor.normalise import NormalisedObservation, Quality
from telehealth.codes import CODES

Key = tuple[UUID, str]
#: breaching readings of one device count as consecutive when each is at most this after the last
CONSECUTIVE_WITHIN = timedelta(minutes=15)
#: the window in which repeated SpO2 dips make a cyclic desaturation
DIPS_WITHIN = timedelta(minutes=10)
CHECK = "check patient and sensor"


def below_plausible(obs: NormalisedObservation) -> bool:
    """A reading under what its code can plausibly be, neither late nor from the future: never
    silent, whatever else is wrong with it."""
    spec = CODES.get(obs.code)
    return (
        spec is not None
        and Quality.IMPLAUSIBLE in obs.quality
        and not {Quality.LATE, Quality.FUTURE} & set(obs.quality)
        and obs.value < spec.plausible[0]
    )


def alarmable(obs: NormalisedObservation) -> bool:
    """Whether an observation can raise or change an alert."""
    return obs.live or below_plausible(obs)


@dataclass
class _Streak:
    count: int = 0
    device: str = ""
    at: datetime | None = None


@dataclass
class _Dips:
    """One oximeter's dips below a patient's dip line."""

    below: bool = False
    times: deque[datetime] = field(default_factory=deque)


class Act(StrEnum):
    OPEN = "open"
    UPGRADE = "upgrade"  # a warning becomes urgent, or moves to a later stage
    RENOTIFY = "renotify"
    RESOLVE = "resolve"


@dataclass(frozen=True)
class Action:
    act: Act
    patient_id: UUID
    rule: str
    severity: Severity
    message: str
    code: str
    value: float
    device_id: str
    seq: int | None
    measured_at: datetime


RuleSet = tuple[ThresholdRule, ...]


def _by_code(rules: RuleSet) -> dict[str, list[ThresholdRule]]:
    grouped: dict[str, list[ThresholdRule]] = {}
    for rule in rules:
        grouped.setdefault(rule.code, []).append(rule)
    return grouped


class ThresholdEngine:
    def __init__(self, rules: RuleSet = DEFAULT_RULES) -> None:
        self._default = _by_code(rules)
        self._urgent_bands = {
            code: [b for rule in grouped for b in rule.bands if b.severity is Severity.URGENT]
            for code, grouped in self._default.items()
        }
        self._streaks: dict[Key, _Streak] = {}
        self._dips: dict[tuple[UUID, str], _Dips] = {}
        self._lows = LowEpisodes()

    def may_be_urgent(self, code: str, value: float) -> bool:
        """Whether a value (canonical units) is in an urgent band of the default rules: a
        guess made before any state is read or quality checked, at which readings to store
        first (`processor.urgent`). Patients with their own thresholds are
        judged on the defaults here; a wrong guess changes only which transaction commits
        first, never an alert."""
        return any(band.matches(value) for band in self._urgent_bands.get(code, ()))

    def evaluate(
        self,
        observations: Iterable[NormalisedObservation],
        open_alerts: Mapping[Key, Severity],
        patient_rules: Mapping[UUID, RuleSet] | None = None,
        episodes: Mapping[UUID, EpisodeView] | None = None,
    ) -> list[Action]:
        """Actions for live observations, in measurement order; late or flagged ones are ignored
        (but for values below the plausible range, see the module's docstring).

        `patient_rules` holds the rule sets of patients with their own thresholds; `episodes`
        the stage of each patient's open `glucose_low` alert (without it, the stage is taken
        from `open_alerts`: measured, not forecast). Derived trend observations (forecast,
        rate) go with the glucose reading they were derived from; derived `spo2_flagged` ones
        count as dips only.
        """
        state = dict(open_alerts)
        views: dict[UUID, EpisodeView | None] = dict(episodes or {})
        own = {pid: _by_code(rules) for pid, rules in (patient_rules or {}).items()}
        trend: dict[tuple[str, int, str], float] = {}
        live = []
        for o in observations:
            if not alarmable(o):
                continue
            if o.code in (LEVEL_CODE, ROC_CODE):
                trend[(o.device_id, o.seq, o.code)] = o.value
            else:
                live.append(o)
        actions: list[Action] = []
        for obs in sorted(live, key=lambda o: o.measured_at):
            flagged = obs.code == FLAGGED_CODE
            for rule in own.get(obs.patient_id, self._default).get("spo2" if flagged else obs.code, ()):
                if rule.name == DIPS_RULE:
                    action = self._dip(rule, obs, state)
                elif flagged:
                    continue
                elif rule.name == LOW_RULE and obs.code == MEASURED_CODE:
                    action = self._low(rule, obs, state, views, trend)
                else:
                    action = self._step(rule, obs, state)
                if action is not None:
                    actions.append(action)
        return actions

    def _low(
        self,
        rule: ThresholdRule,
        obs: NormalisedObservation,
        state: dict[Key, Severity],
        views: dict[UUID, EpisodeView | None],
        trend: Mapping[tuple[str, int, str], float],
    ) -> Action | None:
        """A glucose reading through the hypoglycaemia episode (processor.alerts.glucose)."""
        key = (obs.patient_id, rule.name)
        if obs.patient_id not in views and key in state:
            views[obs.patient_id] = EpisodeView(Stage.of(state[key], MEASURED_CODE), False, obs.measured_at)
        view = views.get(obs.patient_id)
        urgent, warning = (band.lt for band in rule.bands)
        assert urgent is not None and warning is not None
        default = glucose.DEFAULT_LOW
        predicted_low, horizon = rule.predicted or (default.predicted_low, default.horizon_min)
        cfg = replace(
            default,
            low=warning,
            urgent_low=urgent,
            warning_after=rule.warning_after,
            min_duration=rule.min_duration or default.min_duration,
            end_after=rule.end_after or default.end_after,
            predicted_low=predicted_low,
            horizon_min=horizon,
            renotify_after=rule.renotify_after or default.renotify_after,
            predicted_after=rule.predicted_after or default.predicted_after,
            urgent_near=default.urgent_near if rule.urgent_near is None else rule.urgent_near,
            drop_min=default.drop_min if rule.drop_min is None else rule.drop_min,
            ar2_floor=default.ar2_floor if rule.ar2_floor is None else rule.ar2_floor,
        )
        level = trend.get((obs.device_id, obs.seq, LEVEL_CODE))
        rate = trend.get((obs.device_id, obs.seq, ROC_CODE))
        forecast = (
            glucose.Forecast(
                round(project(level, rate, cfg.horizon_min), 2),
                round(project(level, rate, cfg.urgent_horizon_min), 2),
                rate,
                round(project(level, rate, cfg.urgent_far_min), 2),
            )
            if level is not None and rate is not None
            else None
        )
        decision = self._lows.step(
            obs.patient_id,
            obs.measured_at,
            obs.value,
            view,
            cfg,
            cgm=obs.source == "cgm",
            forecast=forecast,
            device=obs.device_id,
            deliberate=obs.source == "smbg",
        )
        if decision is None:
            return None
        act = Act(decision.act)
        if act is Act.RESOLVE:
            views[obs.patient_id] = None
            state.pop(key, None)
        else:
            views[obs.patient_id] = EpisodeView(decision.stage, False, obs.measured_at)
            state[key] = decision.stage.severity
        return Action(
            act,
            obs.patient_id,
            rule.name,
            decision.stage.severity,
            _checked(decision.message, obs),
            decision.code,
            decision.value,
            obs.device_id,
            obs.seq,
            obs.measured_at,
        )

    def _step(
        self, rule: ThresholdRule, obs: NormalisedObservation, state: dict[Key, Severity]
    ) -> Action | None:
        key = (obs.patient_id, rule.name)
        current = state.get(key)
        band = rule.evaluate(obs.value)

        def act(kind: Act, severity: Severity, message: str) -> Action:
            return Action(
                kind,
                obs.patient_id,
                rule.name,
                severity,
                _checked(message, obs),
                obs.code,
                obs.value,
                obs.device_id,
                obs.seq,
                obs.measured_at,
            )

        if band is None:
            self._streaks.pop(key, None)
            if current is not None and rule.cleared(obs.value):
                del state[key]
                return act(Act.RESOLVE, current, f"cleared: {obs.value:g} {obs.unit}")
            return None
        streak = self._streaks.setdefault(key, _Streak())
        consecutive = (
            streak.device == obs.device_id
            and streak.at is not None
            and obs.measured_at - streak.at <= CONSECUTIVE_WITHIN
        )
        streak.count = streak.count + 1 if consecutive else 1
        streak.device, streak.at = obs.device_id, obs.measured_at
        message = f"{band.label}: {obs.value:g} {obs.unit}"
        if band.severity is Severity.URGENT or below_plausible(obs):
            if current is None:
                state[key] = Severity.URGENT
                return act(Act.OPEN, Severity.URGENT, message)
            if current is Severity.WARNING:
                state[key] = Severity.URGENT
                return act(Act.UPGRADE, Severity.URGENT, message)
            return None
        deliberate = obs.code == MEASURED_CODE and obs.source == "smbg"  # a finger-prick
        if current is None and (streak.count >= rule.warning_after or deliberate):
            state[key] = Severity.WARNING
            return act(Act.OPEN, Severity.WARNING, message)
        return None

    def _dip(
        self, rule: ThresholdRule, obs: NormalisedObservation, state: dict[Key, Severity]
    ) -> Action | None:
        """Cyclic desaturation: `rule.warning_after` dips to the line within `DIPS_WITHIN`."""
        key = (obs.patient_id, rule.name)
        line = rule.bands[0].le
        assert line is not None
        dips = self._dips.setdefault((obs.patient_id, obs.device_id), _Dips())
        below = obs.value <= line
        if below and not dips.below:
            dips.times.append(obs.measured_at)
        dips.below = below
        while dips.times and obs.measured_at - dips.times[0] > DIPS_WITHIN:
            dips.times.popleft()
        current = state.get(key)
        count = len(dips.times)
        if current is None and count >= rule.warning_after:
            state[key] = Severity.WARNING
            return Action(
                Act.OPEN,
                obs.patient_id,
                rule.name,
                Severity.WARNING,
                f"{rule.bands[0].label}: {count} dips to {line:g} % or below within"
                f" {DIPS_WITHIN.total_seconds() / 60:.0f} min, the last {obs.value:g} %",
                "spo2",
                obs.value,
                obs.device_id,
                obs.seq,
                obs.measured_at,
            )
        if current is not None and not dips.times and obs.code != FLAGGED_CODE and not below:
            del state[key]
            return Action(
                Act.RESOLVE,
                obs.patient_id,
                rule.name,
                current,
                f"cleared: no dip to {line:g} % for {DIPS_WITHIN.total_seconds() / 60:.0f} min",
                "spo2",
                obs.value,
                obs.device_id,
                obs.seq,
                obs.measured_at,
            )
        return None


def _checked(message: str, obs: NormalisedObservation) -> str:
    """A value below the plausible range says so: the sensor or the patient needs looking at."""
    return f"{message} (below the plausible range: {CHECK})" if below_plausible(obs) else message
