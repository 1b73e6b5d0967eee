"""Default threshold rules of SPEC section 5. Pure: values in, breaches out.

Each rule has bands checked most severe first; a glucose reading of 2.5 mmol/L is one
`glucose_low` breach at `urgent` ("urgent low"), not two alerts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID

from processor.normalise import NormalisedObservation


class Severity(StrEnum):
    WARNING = "warning"
    URGENT = "urgent"

    @property
    def rank(self) -> int:
        return 2 if self is Severity.URGENT else 1


@dataclass(frozen=True)
class Band:
    """Fires when any given limit is crossed: value < lt, <= le, > gt, >= ge."""

    severity: Severity
    label: str
    lt: float | None = None
    le: float | None = None
    gt: float | None = None
    ge: float | None = None

    def matches(self, v: float) -> bool:
        return (
            (self.lt is not None and v < self.lt)
            or (self.le is not None and v <= self.le)
            or (self.gt is not None and v > self.gt)
            or (self.ge is not None and v >= self.ge)
        )


@dataclass(frozen=True)
class ThresholdRule:
    name: str
    code: str
    bands: tuple[Band, ...]

    def evaluate(self, value: float) -> Band | None:
        return next((band for band in self.bands if band.matches(value)), None)


DEFAULT_RULES: tuple[ThresholdRule, ...] = (
    ThresholdRule(
        "glucose_low",
        "glucose",
        (
            Band(Severity.URGENT, "Glucose urgent low", lt=3.0),
            Band(Severity.WARNING, "Glucose low", lt=3.9),
        ),
    ),
    ThresholdRule("glucose_high", "glucose", (Band(Severity.WARNING, "Glucose high", gt=13.9),)),
    ThresholdRule(
        "spo2_low",
        "spo2",
        (
            Band(Severity.URGENT, "SpO2 urgent low", le=91),
            Band(Severity.WARNING, "SpO2 low", le=93),
        ),
    ),
    ThresholdRule(
        "pulse",
        "pulse",
        (
            Band(Severity.URGENT, "Pulse urgent", ge=131, le=40),
            Band(Severity.WARNING, "Pulse abnormal", ge=111, le=50),
        ),
    ),
)


@dataclass(frozen=True)
class Breach:
    patient_id: UUID
    rule: str
    severity: Severity
    message: str
    code: str
    value: float
    device_id: str
    seq: int
    measured_at: datetime


def breaches(
    observations: Iterable[NormalisedObservation], rules: tuple[ThresholdRule, ...] = DEFAULT_RULES
) -> list[Breach]:
    """The worst breach per (patient, rule) among live observations; earliest on ties."""
    by_code: dict[str, list[ThresholdRule]] = {}
    for rule in rules:
        by_code.setdefault(rule.code, []).append(rule)
    worst: dict[tuple[UUID, str], Breach] = {}
    for obs in observations:
        if not obs.live:
            continue
        for rule in by_code.get(obs.code, ()):
            band = rule.evaluate(obs.value)
            if band is None:
                continue
            found = Breach(
                obs.patient_id,
                rule.name,
                band.severity,
                f"{band.label}: {obs.value:g} {obs.unit}",
                obs.code,
                obs.value,
                obs.device_id,
                obs.seq,
                obs.measured_at,
            )
            key = (obs.patient_id, rule.name)
            best = worst.get(key)
            if best is None or (found.severity.rank, -found.measured_at.timestamp()) > (
                best.severity.rank,
                -best.measured_at.timestamp(),
            ):
                worst[key] = found
    return list(worst.values())
