"""CGM trend: a noise-resistant rate and forecast, as derived observations. Pure.

Every stored CGM reading of the last `window` counts, late ones included (they are real
data); only a live reading produces derived observations, so late data never opens an alert
by itself but completes the picture for the next live reading.

The fit is a Kalman filter (level, rate and the sensor's own drifting error, run through the
window from an uninformed start): sensor noise is weighed against how fast glucose can really
change, so a few noisy readings bend the forecast far less than a least-squares line through
the same points does. The projection keeps the filtered rate *relative* to the level (a
straight line in log glucose, as Nightscout's AR2 works in log space): a fall of 0.1 mmol/L/min
at 5 mmol/L slows as glucose drops instead of running on to zero. Forecasts are clamped to the
range a CGM reports (2.2-22.2 mmol/L).

- `glucose_level`: the filtered glucose level (mmol/L) at the reading;
- `glucose_roc`: the filtered rate of change (mmol/L/min).

A reading that moved faster than glucose can (`MAX_PHYSIOLOGICAL_RATE`, against any reading of
the last 15 minutes at least 5 minutes before it) gets no trend: a compression low or a
dislodged sensor is noise, and never drives a forecast. Its value still counts as measured.

The alert engine projects them with `project` as far ahead as the patient's rule asks.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta
from uuid import UUID

from processor.alerts.glucose import LEVEL_CODE, MAX_PHYSIOLOGICAL_RATE, ROC_CODE
from processor.normalise import NormalisedObservation, Quality

__all__ = [
    "LEVEL_CODE",
    "ROC_CODE",
    "TrendTracker",
    "is_cgm_glucose",
    "kalman_trend",
    "project",
]

#: what a CGM reports (40-400 mg/dL); a forecast outside it is not a number to show anyone
FORECAST_RANGE = (2.2, 22.2)
#: flags that make a reading unfit even as context (late readings stay: they are real data)
_UNFIT = {Quality.IMPLAUSIBLE, Quality.FUTURE, Quality.ARTEFACT}


def is_cgm_glucose(obs: NormalisedObservation) -> bool:
    """Glucose from a CGM (the normaliser sets `source` from the provisioned device kind)."""
    return obs.code == "glucose" and obs.source == "cgm"


def fit_for_trend(obs: NormalisedObservation) -> bool:
    """CGM glucose the trend may use: live or late, never implausible or in the future."""
    return is_cgm_glucose(obs) and not (set(obs.quality) & _UNFIT)


Matrix = list[list[float]]


def _mul(a: Matrix, b: Matrix) -> Matrix:
    return [[sum(a[i][k] * b[k][j] for k in range(len(b))) for j in range(len(b[0]))] for i in range(len(a))]


def kalman_trend(
    points: list[tuple[float, float]],
    sensor_sd: float = 0.25,
    sensor_corr_5min: float = 0.7,
    white_sd: float = 0.05,
    accel_sd: float = 0.008,
) -> tuple[float, float]:
    """(level, rate) at the last of `points` (minute, mmol/L), oldest first.

    State: glucose level, its rate, and the sensor's error. CGM error is autocorrelated (it
    drifts for several readings rather than jumping), so it is modelled as its own AR(1) state
    (`sensor_sd`, correlation `sensor_corr_5min` over 5 min) instead of white noise; a run of
    readings that drift together is then not mistaken for a fall. The rate may change by
    `accel_sd` mmol/L/min per sqrt(min).
    """
    t0, y0 = points[0]
    x = [y0, 0.0, 0.0]
    p: Matrix = [[sensor_sd**2, 0.0, 0.0], [0.0, 0.05**2, 0.0], [0.0, 0.0, sensor_sd**2]]
    q = accel_sd**2
    last = t0
    for t, y in points[1:]:
        dt = max(t - last, 1e-6)
        last = t
        a = sensor_corr_5min ** (dt / 5)
        f: Matrix = [[1.0, dt, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, a]]
        noise: Matrix = [
            [q * dt**3 / 3, q * dt**2 / 2, 0.0],
            [q * dt**2 / 2, q * dt, 0.0],
            [0.0, 0.0, sensor_sd**2 * (1 - a * a)],
        ]
        x = [x[0] + dt * x[1], x[1], a * x[2]]
        ft = [list(row) for row in zip(*f, strict=True)]
        p = [
            [u + v for u, v in zip(r1, r2, strict=True)]
            for r1, r2 in zip(_mul(_mul(f, p), ft), noise, strict=True)
        ]
        # the sensor reads level + its error: H = [1, 0, 1]
        ph = [p[i][0] + p[i][2] for i in range(3)]
        s = ph[0] + ph[2] + white_sd**2
        gain = [v / s for v in ph]
        innovation = y - (x[0] + x[2])
        x = [x[i] + gain[i] * innovation for i in range(3)]
        p = [[p[i][j] - gain[i] * ph[j] for j in range(3)] for i in range(3)]
    return x[0], x[1]


def project(level: float, rate: float, minutes: float) -> float:
    """Glucose `minutes` ahead with the rate held relative to the level, clamped to what a CGM
    reports."""
    low, high = FORECAST_RANGE
    if level < low:
        return low
    return min(max(level * math.exp(rate / level * minutes), low), high)


#: how far back a reading's own jump is judged
JUMP_WITHIN = timedelta(minutes=15)
JUMP_AFTER = timedelta(minutes=5)


def physiological(series: list[tuple[datetime, float]]) -> bool:
    """Whether the newest point of a time-ordered series changed no faster than glucose can,
    against every point from 5 to 15 minutes before it."""
    at, value = series[-1]
    for t, v in series[:-1]:
        gap = at - t
        if JUMP_AFTER <= gap <= JUMP_WITHIN and abs(value - v) / (gap.total_seconds() / 60) > (
            MAX_PHYSIOLOGICAL_RATE
        ):
            return False
    return True


class TrendTracker:
    def __init__(
        self,
        window: timedelta = timedelta(minutes=30),
        min_points: int = 3,
        min_span: timedelta = timedelta(minutes=4),
    ) -> None:
        self.window = window
        self._min_points = min_points
        self._min_span = min_span
        self._series: dict[UUID, list[tuple[datetime, float]]] = {}

    def known(self, patient_id: UUID) -> bool:
        return patient_id in self._series

    def seed(self, patient_id: UUID, points: Iterable[tuple[datetime, float]]) -> None:
        """Rebuild a patient's window (after a restart) from stored readings, late ones included."""
        self._series[patient_id] = sorted(points)

    def derive(self, observations: Iterable[NormalisedObservation]) -> list[NormalisedObservation]:
        """Add every fit CGM reading to its patient's window; for each live one, the trend."""
        derived = []
        for obs in sorted(observations, key=lambda o: o.measured_at):
            if not fit_for_trend(obs):
                continue
            series = self._series.setdefault(obs.patient_id, [])
            bisect.insort(series, (obs.measured_at, obs.value))
            newest = series[-1][0]
            while series and series[0][0] < newest - self.window:
                series.pop(0)
            if not obs.live:
                continue
            upto = [p for p in series if obs.measured_at - self.window <= p[0] <= obs.measured_at]
            if not physiological(upto):
                continue
            fit = self._fit(upto)
            if fit is None:
                continue
            level, rate = fit
            derived.append(replace(obs, code=LEVEL_CODE, value=round(level, 3), unit="mmol/L"))
            derived.append(replace(obs, code=ROC_CODE, value=round(rate, 4), unit="mmol/L/min"))
        return derived

    def _fit(self, series: list[tuple[datetime, float]]) -> tuple[float, float] | None:
        """(level, rate) at the newest reading, or None with too little data."""
        if len(series) < self._min_points or series[-1][0] - series[0][0] < self._min_span:
            return None
        t_last = series[-1][0]
        return kalman_trend([((t - t_last).total_seconds() / 60, v) for t, v in series])
