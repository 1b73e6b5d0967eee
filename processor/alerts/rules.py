"""Threshold rules (defaults in docs/contract.md, "Alerts"), built from a patient's thresholds. Pure.

Each rule has bands checked most severe first; a glucose reading of 2.5 mmol/L is one
`glucose_low` breach at `urgent` ("urgent low"), not two alerts. `glucose_low` is run as an
episode (processor.alerts.glucose) that also takes the CGM forecast: predicted low and falling
fast are stages and wording of that one alert, not alerts of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from telehealth.thresholds import Thresholds

#: cyclic desaturation: repeated SpO2 dips (processor.alerts.engine)
DIPS_RULE = "spo2_dips"


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

    def matches(self, v: float, margin: float = 0.0) -> bool:
        """With a margin, the band reaches `margin` further into the normal range."""
        return (
            (self.lt is not None and v < self.lt + margin)
            or (self.le is not None and v <= self.le + margin)
            or (self.gt is not None and v > self.gt - margin)
            or (self.ge is not None and v >= self.ge - margin)
        )


@dataclass(frozen=True)
class ThresholdRule:
    """Bands most severe first, and the hysteresis margin an alert needs to clear."""

    name: str
    code: str
    bands: tuple[Band, ...]
    clear_margin: float
    #: consecutive breaching readings a warning needs
    warning_after: int = 2
    #: or this long below the line without clearing it (None: consecutive readings only)
    min_duration: timedelta | None = None
    #: an episode rule (glucose_low) ends after this long back in range
    end_after: timedelta | None = None
    #: glucose_low: a CGM forecast below this line within this many minutes is a predicted low
    predicted: tuple[float, int] | None = None
    #: glucose_low: an acknowledged urgent low still below the urgent line is notified again after this
    renotify_after: timedelta | None = None
    #: glucose_low: readings in a row a predicted low needs; the near-urgent line; the drop horizon
    predicted_after: int | None = None
    urgent_near: float | None = None
    drop_min: int | None = None
    #: glucose_low: urgent low soon whenever Nightscout's AR2 says urgent low (None: the default)
    ar2_floor: bool | None = None

    def evaluate(self, value: float) -> Band | None:
        return next((band for band in self.bands if band.matches(value)), None)

    def cleared(self, value: float) -> bool:
        """Back in range by the margin, so a value hovering on the line does not flap."""
        return not any(band.matches(value, self.clear_margin) for band in self.bands)


def rules_for(t: Thresholds) -> tuple[ThresholdRule, ...]:
    """The rule set for one patient's thresholds (margins and trend rules are fixed)."""
    spo2_warning, spo2_urgent = t.spo2_limits
    n = t.warning_after
    return (
        ThresholdRule(
            "glucose_low",
            "glucose",
            (
                Band(Severity.URGENT, "Glucose urgent low", lt=t.glucose_urgent_low),
                Band(Severity.WARNING, "Glucose low", lt=t.glucose_low),
            ),
            clear_margin=0.3,
            warning_after=n,
            min_duration=timedelta(minutes=t.glucose_low_minutes),
            end_after=timedelta(minutes=t.glucose_episode_end_minutes),
            predicted=(t.predicted_low_line, t.glucose_predicted_minutes),
            renotify_after=timedelta(minutes=t.glucose_urgent_renotify_minutes),
            predicted_after=t.glucose_predicted_readings,
            urgent_near=t.urgent_near_line,
            drop_min=t.glucose_drop_minutes,
            ar2_floor=t.glucose_ar2_floor,
        ),
        ThresholdRule(
            "glucose_high",
            "glucose",
            (Band(Severity.WARNING, "Glucose high", gt=t.glucose_high),),
            clear_margin=1.0,
            warning_after=n,
        ),
        ThresholdRule(
            "spo2_low",
            "spo2",
            (
                Band(Severity.URGENT, "SpO2 urgent low", le=spo2_urgent),
                Band(Severity.WARNING, "SpO2 low", le=spo2_warning),
            ),
            clear_margin=1.0,
            warning_after=n,
        ),
        # dips to 1 below the urgent line (90 % on scale 1): two within 10 minutes warn
        ThresholdRule(
            DIPS_RULE,
            "spo2",
            (Band(Severity.WARNING, "SpO2 repeated dips", le=spo2_urgent - 1),),
            clear_margin=0.0,
            warning_after=2,
        ),
        ThresholdRule(
            "pulse",
            "pulse",
            (
                Band(Severity.URGENT, "Pulse urgent", ge=t.pulse_high_urgent, le=t.pulse_low_urgent),
                Band(Severity.WARNING, "Pulse abnormal", ge=t.pulse_high_warning, le=t.pulse_low_warning),
            ),
            clear_margin=5.0,
            warning_after=n,
        ),
    )


DEFAULT_RULES = rules_for(Thresholds())
