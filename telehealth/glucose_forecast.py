"""The CGM forecast as the dashboard draws it, from the trend the processor stored.

The processor's Kalman filter (processor/alerts/trend.py) gives each live CGM reading a
filtered level (`glucose_level`, mmol/L) and rate (`glucose_roc`, mmol/L/min), and the alert
engine projects them with the rate held relative to the level (a straight line in log
glucose), clamped to what a CGM reports. The page must draw the very curve the predicted-low
rule judged, so this is that projection; the services may not import each other, so it lives
in the shared core, and tests/unit/telehealth/test_glucose_forecast.py holds it equal to the processor's.
"""

from __future__ import annotations

import math

#: what a CGM reports (40-400 mg/dL); a forecast outside it is not a number to show anyone
FORECAST_RANGE = (2.2, 22.2)


def project(level: float, rate: float, minutes: float) -> float:
    """Glucose `minutes` ahead of a reading with filtered `level` and `rate`."""
    low, high = FORECAST_RANGE
    if level < low:
        return low
    return min(max(level * math.exp(rate / level * minutes), low), high)


def forecast_points(
    level: float, rate: float, horizon_min: int, step_min: int = 5
) -> list[tuple[int, float]]:
    """(minutes ahead, glucose) from 0 to the horizon, every `step_min` minutes and at the end."""
    steps = [*range(0, horizon_min, step_min), horizon_min]
    return [(m, round(project(level, rate, m), 3)) for m in steps]
