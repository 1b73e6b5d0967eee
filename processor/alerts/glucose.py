"""Hypoglycaemia as one episode: one alert per episode that is upgraded as it deepens. Pure: no I/O.

An episode's alert (rule `glucose_low`) climbs four stages and never steps down:

1. predicted low  (warning) the CGM forecast is below the predicted-low line (3.0) within the
                            horizon (25 min);
2. low            (warning) measured below 3.9 on `warning_after` consecutive readings, or for
                            `min_duration` (15 min) without coming back above 3.9 + margin,
                            so a patient hovering 3.8 / 4.0 / 3.8 / 4.0 is flagged once;
3. urgent low soon (urgent) the forecast is below the urgent line (3.0) within the urgent horizon;
4. urgent low     (urgent)  measured below 3.0: on the first reading.

The episode ends by the consensus rule: every reading for `end_after` (15 min) at or above
3.9 and the forecast no longer low. A new severe low after that is a new urgent alert; inside
an episode, a severe low that follows 15 min at or above 3.0 re-notifies (the clinician may
have acknowledged the first). Which alert is open, at which stage, comes from the database
per batch (`EpisodeView`); only the running counts live here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import IntEnum
from uuid import UUID

from processor.alerts.rules import Severity

RULE = "glucose_low"
MEASURED_CODE = "glucose"
FORECAST_CODE = "glucose_forecast"
ROC_CODE = "glucose_roc"
LEVEL_CODE = "glucose_level"


class Stage(IntEnum):
    NONE = 0
    PREDICTED = 1
    LOW = 2
    URGENT_SOON = 3
    URGENT = 4

    @property
    def severity(self) -> Severity:
        return Severity.URGENT if self >= Stage.URGENT_SOON else Severity.WARNING

    @property
    def code(self) -> str:
        return FORECAST_CODE if self in (Stage.PREDICTED, Stage.URGENT_SOON) else MEASURED_CODE

    @staticmethod
    def of(severity: Severity, code: str | None) -> Stage:
        """The stage of a stored alert: its severity and what raised it (forecast or glucose)."""
        forecast = code == FORECAST_CODE
        if severity is Severity.URGENT:
            return Stage.URGENT_SOON if forecast else Stage.URGENT
        return Stage.PREDICTED if forecast else Stage.LOW


@dataclass(frozen=True)
class EpisodeView:
    """The patient's unresolved `glucose_low` alert, as stored."""

    stage: Stage
    acknowledged: bool
    triggered_at: datetime


@dataclass(frozen=True)
class LowConfig:
    low: float = 3.9
    urgent_low: float = 3.0
    warning_after: int = 2
    min_duration: timedelta = timedelta(minutes=15)
    #: a spell below the line lasts until a reading is at least this far above it
    spell_margin: float = 0.3
    end_after: timedelta = timedelta(minutes=15)
    #: consecutive forecasts below a line before they count (the filter already smooths)
    forecast_after: int = 1
    #: a low is predicted when the forecast is below `predicted_low` within `horizon_min`, an
    #: urgent low soon when it is below `urgent_low` within `urgent_horizon_min`. Well below
    #: the low line and a little further ahead: a fall that levels off near the line (most near
    #: misses) is not called, a real descent still is (docs/alerts.md). The nearer forecast is
    #: the surer one, so it is the one that makes an alert urgent.
    predicted_low: float = 3.0
    horizon_min: int = 25
    urgent_horizon_min: int = 15
    #: forecasts count only while glucose is below this: far above the line, a fall is not yet news
    predict_below: float = 6.0


DEFAULT_LOW = LowConfig()


@dataclass(frozen=True)
class Forecast:
    """The CGM trend for one live reading: projected glucose at the two horizons, and the rate."""

    low: float  # at `horizon_min`
    urgent: float  # at `urgent_horizon_min`
    rate: float  # mmol/L/min


@dataclass(frozen=True)
class Decision:
    """What to do for one reading: open / upgrade / renotify / resolve, with its message."""

    act: str
    stage: Stage
    message: str
    code: str
    value: float


@dataclass
class _State:
    streak: int = 0
    spell_start: datetime | None = None
    above_since: datetime | None = None
    urgent_ok_since: datetime | None = None
    urgent_seen: bool = False
    #: the CGM trend of the latest reading (None: none yet, or the reading was not from a CGM)
    trend: Forecast | None = None
    forecast_low_streak: int = 0
    forecast_urgent_streak: int = 0
    opened_at: datetime | None = None
    last_at: datetime | None = None


class LowEpisodes:
    """Per patient running counts; one decision at most per live glucose reading."""

    def __init__(self) -> None:
        self._state: dict[UUID, _State] = {}

    def step(
        self,
        patient: UUID,
        at: datetime,
        value: float,
        view: EpisodeView | None,
        cfg: LowConfig,
        *,
        cgm: bool,
        forecast: Forecast | None = None,
    ) -> Decision | None:
        """One live glucose reading; a CGM reading comes with its forecast if the trend has one.
        A finger-prick leaves the forecast counts alone."""
        s = self._state.setdefault(patient, _State())
        if s.last_at is not None and at < s.last_at:
            return None  # older than what was judged already: it is context, not news
        s.last_at = at
        if cgm:
            s.trend = forecast
            gated = forecast if forecast is not None and value < cfg.predict_below else None
            low_soon = gated is not None and gated.low < cfg.predicted_low
            urgent_soon = gated is not None and gated.urgent < cfg.urgent_low
            s.forecast_low_streak = s.forecast_low_streak + 1 if low_soon else 0
            s.forecast_urgent_streak = s.forecast_urgent_streak + 1 if urgent_soon else 0
        if value < cfg.low:
            s.streak += 1
            s.spell_start = s.spell_start or at
            s.above_since = None
        else:
            s.streak = 0
            s.above_since = s.above_since or at
            if value >= cfg.low + cfg.spell_margin:
                s.spell_start = None
        if value < cfg.urgent_low:
            if s.urgent_ok_since is not None and at - s.urgent_ok_since >= cfg.end_after:
                s.urgent_seen = False  # a new severe low after recovery above the urgent line
            s.urgent_ok_since = None
        else:
            s.urgent_ok_since = s.urgent_ok_since or at
        return self._decide(s, at, value, view, cfg)

    def _decide(
        self, s: _State, at: datetime, value: float, view: EpisodeView | None, cfg: LowConfig
    ) -> Decision | None:
        current = view.stage if view is not None else Stage.NONE
        if view is None:
            s.opened_at = None
        elif s.opened_at is None:  # an episode this process has not seen before (a restart)
            s.opened_at = view.triggered_at
            s.urgent_seen = view.stage is Stage.URGENT

        measured = Stage.NONE
        if value < cfg.urgent_low:
            measured = Stage.URGENT
        elif value < cfg.low and (
            s.streak >= cfg.warning_after
            or (s.spell_start is not None and at - s.spell_start >= cfg.min_duration)
        ):
            measured = Stage.LOW
        predicted = Stage.NONE
        if s.forecast_urgent_streak >= cfg.forecast_after:
            predicted = Stage.URGENT_SOON
        elif s.forecast_low_streak >= cfg.forecast_after:
            predicted = Stage.PREDICTED
        target = max(measured, predicted)

        if current is Stage.NONE:
            if target is Stage.NONE:
                return None
            s.opened_at = at
            s.urgent_seen = target is Stage.URGENT
            return self._decision("open", target, value, s, cfg)
        if target > current:
            s.urgent_seen = s.urgent_seen or target is Stage.URGENT
            return self._decision("upgrade", target, value, s, cfg)
        if target is Stage.URGENT and not s.urgent_seen:
            s.urgent_seen = True
            decision = self._decision("renotify", Stage.URGENT, value, s, cfg)
            minutes = cfg.end_after.total_seconds() / 60
            again = f" again, after {minutes:.0f} min or more at or above {cfg.urgent_low:.1f}"
            return Decision(decision.act, decision.stage, decision.message + again, decision.code, value)
        forecast_ok = s.trend is None or s.trend.low >= cfg.predicted_low
        if s.above_since is not None and forecast_ok:
            since = max(s.above_since, s.opened_at or s.above_since)
            if at - since >= cfg.end_after:
                minutes = (at - s.above_since).total_seconds() / 60
                s.opened_at, s.urgent_seen, s.spell_start = None, False, None
                return Decision(
                    "resolve",
                    current,
                    f"Episode over: glucose {value:g} mmol/L,"
                    f" at or above {cfg.low:.1f} for {minutes:.0f} min",
                    MEASURED_CODE,
                    value,
                )
        return None

    def _decision(self, act: str, stage: Stage, value: float, s: _State, cfg: LowConfig) -> Decision:
        projected = None
        if stage.code == FORECAST_CODE and s.trend is not None:
            projected = s.trend.urgent if stage is Stage.URGENT_SOON else s.trend.low
        shown = projected if projected is not None else value
        return Decision(act, stage, self._message(stage, value, s, cfg, projected), stage.code, shown)

    @staticmethod
    def _message(stage: Stage, value: float, s: _State, cfg: LowConfig, projected: float | None) -> str:
        rate = s.trend.rate if s.trend is not None else None
        trend = f", falling {-rate:.2f} mmol/L/min" if rate is not None and rate < 0 else ""
        if stage is Stage.URGENT:
            return f"Glucose urgent low: {value:g} mmol/L (below {cfg.urgent_low:.1f})"
        if stage is Stage.LOW:
            spell = ""
            if s.spell_start is not None and s.last_at is not None:
                spell = (
                    f", below {cfg.low:.1f} for {(s.last_at - s.spell_start).total_seconds() / 60:.0f} min"
                )
            return f"Glucose low: {value:g} mmol/L{spell}"
        line, name, within = (
            (cfg.urgent_low, "urgent low", cfg.urgent_horizon_min)
            if stage is Stage.URGENT_SOON
            else (cfg.low, "low", cfg.horizon_min)
        )
        reach = f" (forecast {projected:.1f})" if projected is not None else ""
        return (
            f"Glucose {name} soon: {value:g} mmol/L now{trend};"
            f" predicted below {line:.1f} mmol/L within {within} min{reach}"
        )
