"""Threshold alerting with noise control and hysteresis. Pure: no I/O.

Urgent fires on the first breaching reading; a warning needs the rule's `warning_after`
consecutive breaching readings; an alert resolves itself only once the value is back in range by the
rule's margin. Which alerts are open is the database's truth, passed in per batch, so a
restart or a clinician's manual resolve never leaves the engine believing otherwise; only
the breach streaks live here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID

from processor.alerts.rules import DEFAULT_RULES, Severity, ThresholdRule
from processor.normalise import NormalisedObservation

Key = tuple[UUID, str]


class Act(StrEnum):
    OPEN = "open"
    ESCALATE = "escalate"
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
        self._streaks: dict[Key, int] = {}

    def evaluate(
        self,
        observations: Iterable[NormalisedObservation],
        open_alerts: Mapping[Key, Severity],
        patient_rules: Mapping[UUID, RuleSet] | None = None,
    ) -> list[Action]:
        """Actions for live observations, in measurement order; late or flagged ones are ignored.

        `patient_rules` holds the rule sets of patients with their own thresholds.
        """
        state = dict(open_alerts)
        own = {pid: _by_code(rules) for pid, rules in (patient_rules or {}).items()}
        actions: list[Action] = []
        for obs in sorted((o for o in observations if o.live), key=lambda o: o.measured_at):
            for rule in own.get(obs.patient_id, self._default).get(obs.code, ()):
                action = self._step(rule, obs, state)
                if action is not None:
                    actions.append(action)
        return actions

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
                message,
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
        streak = self._streaks.get(key, 0) + 1
        self._streaks[key] = streak
        message = f"{band.label}: {obs.value:g} {obs.unit}"
        if band.severity is Severity.URGENT:
            if current is None:
                state[key] = Severity.URGENT
                return act(Act.OPEN, Severity.URGENT, message)
            if current is Severity.WARNING:
                state[key] = Severity.URGENT
                return act(Act.ESCALATE, Severity.URGENT, message)
            return None
        if current is None and streak >= rule.warning_after:
            state[key] = Severity.WARNING
            return act(Act.OPEN, Severity.WARNING, message)
        return None
