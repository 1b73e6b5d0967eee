"""CGM trend: rate of change and a 20-minute forecast, as derived observations. Pure.

A least-squares line through the last `window` of a patient's live CGM glucose gives the
rate (mmol/L/min) and the value forecast `horizon` ahead. They become observations with
their own codes, so the threshold engine applies the same noise control and hysteresis:

- `glucose_roc`: the rate, reported only while glucose is below 5.5 mmol/L (else 0);
- `glucose_forecast`: the forecast, reported only while glucose is still >= 3.9 (once it is
  low, the glucose_low rule has the patient; the prediction stays open until recovery).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta
from uuid import UUID

from processor.normalise import NormalisedObservation

ROC_CODE = "glucose_roc"
FORECAST_CODE = "glucose_forecast"
FALLING_FAST_BELOW = 5.5
PREDICT_WHILE_AT_LEAST = 3.9


def is_cgm_glucose(obs: NormalisedObservation) -> bool:
    """What the trend follows: live glucose from a CGM."""
    return obs.code == "glucose" and obs.source == "cgm" and obs.live


class TrendTracker:
    def __init__(
        self,
        window: timedelta = timedelta(minutes=20),
        horizon: timedelta = timedelta(minutes=20),
        min_points: int = 3,
        min_span: timedelta = timedelta(minutes=4),
    ) -> None:
        self.window = window
        self._horizon_min = horizon.total_seconds() / 60
        self._min_points = min_points
        self._min_span = min_span
        self._series: dict[UUID, deque[tuple[datetime, float]]] = {}

    def known(self, patient_id: UUID) -> bool:
        return patient_id in self._series

    def seed(self, patient_id: UUID, points: Iterable[tuple[datetime, float]]) -> None:
        """Rebuild a patient's window (after a restart) from stored readings."""
        self._series[patient_id] = deque(sorted(points))

    def derive(self, observations: Iterable[NormalisedObservation]) -> list[NormalisedObservation]:
        derived = []
        for obs in sorted(observations, key=lambda o: o.measured_at):
            if not is_cgm_glucose(obs):
                continue
            series = self._series.setdefault(obs.patient_id, deque())
            series.append((obs.measured_at, obs.value))
            while series and series[0][0] < obs.measured_at - self.window:
                series.popleft()
            fit = self._fit(series)
            if fit is None:
                continue
            slope, forecast = fit
            roc = slope if obs.value < FALLING_FAST_BELOW else 0.0
            derived.append(replace(obs, code=ROC_CODE, value=round(roc, 4), unit="mmol/L/min"))
            if obs.value >= PREDICT_WHILE_AT_LEAST:
                derived.append(replace(obs, code=FORECAST_CODE, value=round(forecast, 2), unit="mmol/L"))
        return derived

    def _fit(self, series: deque[tuple[datetime, float]]) -> tuple[float, float] | None:
        if len(series) < self._min_points or series[-1][0] - series[0][0] < self._min_span:
            return None
        t_last = series[-1][0]
        xs = [(t - t_last).total_seconds() / 60 for t, _ in series]
        ys = [v for _, v in series]
        n = len(xs)
        mx, my = sum(xs) / n, sum(ys) / n
        sxx = sum((x - mx) ** 2 for x in xs)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
        intercept = my - slope * mx
        return slope, intercept + slope * self._horizon_min
