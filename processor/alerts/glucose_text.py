"""The wording of `glucose_low` alerts (processor.alerts.glucose): every message names the rule
that fired, its line and its horizon, so a clinician can judge the alert without the code."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from processor.alerts import ar2

if TYPE_CHECKING:
    from processor.alerts.glucose import LowConfig, _State


def measured(urgent: bool, value: float, s: _State, cfg: LowConfig, deliberate: bool) -> str:
    """A measured low or urgent low: the value, the line, and what made it count."""
    if urgent:
        return f"Glucose urgent low: {value:g} mmol/L (below {cfg.urgent_low:.1f})"
    if deliberate:
        why = ", finger-prick"
    elif s.spell_start is not None and s.last_at is not None and s.streak < cfg.warning_after:
        why = f", below {cfg.low:.1f} for {(s.last_at - s.spell_start).total_seconds() / 60:.0f} min"
    else:
        why = f", {s.streak} readings in a row"
    return f"Glucose low: {value:g} mmol/L (below {cfg.low:.1f}){why}"


def forecast(urgent: bool, value: float, s: _State, cfg: LowConfig) -> tuple[float, str]:
    """(the value to show, the message) of a low or urgent low soon: the rule that fired, with
    its line and horizon."""
    name = "urgent low" if urgent else "low"
    head = f"Glucose {name} soon: {value:g} mmol/L now"
    why = s.why_urgent if urgent else s.why_low
    if why == "near":
        line = cfg.urgent_near if cfg.urgent_near is not None else cfg.urgent_low
        return value, f"{head}, not rising; at or below {line:.1f}, near the urgent line {cfg.urgent_low:.1f}"
    if why == "ar2" and s.ar2 is not None:
        return s.ar2, (
            f"{head}; AR2 forecast {s.ar2:.1f} mmol/L within {ar2.EVENT_MINUTES} min, below"
            f" {cfg.low:.1f} (Nightscout's urgent low)"
        )
    if why == "drop" and s.drop is not None:
        within = cfg.drop_min if urgent else cfg.horizon_min
        ahead = round(value * math.exp(s.drop / value * within), 2)
        return ahead, (
            f"{head}, dropping {-s.drop:.2f} mmol/L/min since the last reading; at that rate"
            f" {ahead:.1f} mmol/L within {within} min, below {cfg.urgent_low:.1f}"
        )
    rate = s.trend.rate if s.trend is not None else None
    trend = f", falling {-rate:.2f} mmol/L/min" if rate is not None and rate < 0 else ""
    if urgent:
        far = why == "far"
        line, within = cfg.urgent_low, cfg.urgent_far_min if far else cfg.urgent_horizon_min
        projected = None if s.trend is None else s.trend.far if far else s.trend.urgent
    else:
        line, within = cfg.predicted_low, cfg.horizon_min
        projected = None if s.trend is None else s.trend.low
    reach = f"forecast {projected:.1f} mmol/L" if projected is not None else "forecast"
    shown = projected if projected is not None else value
    return shown, f"{head}{trend}; {reach} within {within} min, below {line:.1f}"
