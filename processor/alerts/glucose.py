"""Hypoglycaemia as episodes: one alert per episode, upgraded as it deepens. Pure: no I/O.

An episode's alert (rule `glucose_low`) climbs four stages and never steps down:

1. predicted low  (warning) the CGM forecast is below the predicted-low line (3.9) within the
                            horizon (20 min) on `predicted_after` (2) readings in a row, or
                            on one when glucose falls fast (a filtered rate of `steep_rate`,
                            or a steep drop: see 3);
2. low            (warning) measured below 3.9 on `warning_after` consecutive readings of one
                            CGM (each within 15 min of the one before), or for `min_duration`
                            (15 min) without coming back above 3.9 + margin, so a patient
                            hovering 3.8 / 4.0 / 3.8 / 4.0 is flagged once; a finger-prick
                            below 3.9 is deliberate and alerts at once;
3. urgent low soon (urgent) the forecast is below the urgent line (3.0) within the urgent horizon
                            (20 min; `urgent_far_min`, 30, once glucose is below 3.9); or the
                            reading is at or below `urgent_near` (3.4) and not rising; or a
                            steep drop: the last two readings of the CGM, continued at their own
                            rate, reach 3.0 within `drop_min` (15) (within the predicted
                            horizon it is a predicted low at once);
                            and, as a floor (`ar2_floor`), whenever AR2 says urgent low
                            (processor.alerts.ar2): never later than Nightscout;
4. urgent low     (urgent)  measured below 3.0: on the first reading.

A forecast whose rate is beyond what physiology allows (`max_rate`) is sensor noise and
raises nothing, nor does a drop between two readings when the filtered trend is noise or
missing; measured values always count. The filter weighs a single fall against sensor noise
and lags a real crash by a reading; the drop rule is how AR2 sees it (two readings), the
confirmation rule keeps a slow forecast from crying wolf (docs/alerts.md: what each costs).

The alert resolves by the consensus rule: every reading for `end_after` (15 min) at or above
3.9, the forecast no longer low, and no stage called for by the reading that would end it
(a steep fall from a rise, which AR2 calls urgent, keeps the alert open). Every dip is seen:
when the consensus says the dip is over but the alert is still open (the forecast kept it),
the next dip re-notifies it; a severe low that follows 15 min at or above 3.0 re-notifies; an
acknowledged urgent low still below 3.0 re-notifies after `renotify_after` (30 min). Which
alert is open, at which stage, and when it was acknowledged, comes from the database per
batch (`EpisodeView`); only the running counts live here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import IntEnum
from uuid import UUID

from processor.alerts import ar2, glucose_text
from processor.alerts.rules import Severity

RULE = "glucose_low"
MEASURED_CODE = "glucose"
FORECAST_CODE = "glucose_forecast"
ROC_CODE = "glucose_roc"
LEVEL_CODE = "glucose_level"
#: the fastest a glucose level really changes, mmol/L/min (6 mg/dL/min; docs/alerts.md): a
#: CGM trend faster than this is sensor noise (a compression low, a calibration jump)
MAX_PHYSIOLOGICAL_RATE = 0.33


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

    @property
    def measured(self) -> bool:
        return self.code == MEASURED_CODE

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
    acknowledged_at: datetime | None = None


@dataclass(frozen=True)
class LowConfig:
    low: float = 3.9
    urgent_low: float = 3.0
    warning_after: int = 2
    #: readings of one device count as consecutive when each is at most this after the last
    consecutive_within: timedelta = timedelta(minutes=15)
    min_duration: timedelta = timedelta(minutes=15)
    #: a spell below the line lasts until a reading is at least this far above it
    spell_margin: float = 0.3
    end_after: timedelta = timedelta(minutes=15)
    #: consecutive forecasts below a line before they count (the filter already smooths)
    forecast_after: int = 1
    #: a low is predicted when the forecast is below `predicted_low` within `horizon_min`, an
    #: urgent low soon when it is below `urgent_low` within `urgent_horizon_min`
    #: (docs/alerts.md: how they were chosen, and what they achieve on two cohorts)
    predicted_low: float = 3.9
    horizon_min: int = 20
    urgent_horizon_min: int = 20
    #: forecasts count only while glucose is below this: far above the line, a fall is not yet news
    predict_below: float = 7.0
    #: a CGM rate beyond this (mmol/L/min, either way) is sensor noise, never a forecast alarm
    max_rate: float = MAX_PHYSIOLOGICAL_RATE
    #: an acknowledged urgent low still below the urgent line is notified again after this
    renotify_after: timedelta = timedelta(minutes=30)
    #: a predicted low needs the forecast on this many readings in a row, unless glucose falls
    #: at `steep_rate` (mmol/L/min) or more, or drops steeply between two readings
    predicted_after: int = 2
    steep_rate: float = 0.15
    #: urgent low soon from the level: a CGM reading at or below this and not rising (AR2's
    #: urgent level: glucose flat in the low 60s mg/dL); None: off
    urgent_near: float | None = 3.4
    #: once below the low line, the urgent forecast looks this far ahead
    urgent_far_min: int = 30
    #: a steep drop: the last two readings' own rate reaches the urgent line within this (0: off)
    drop_min: int = 15
    #: urgent low soon whenever Nightscout's AR2 says urgent low: never later than AR2
    ar2_floor: bool = True


DEFAULT_LOW = LowConfig()


@dataclass(frozen=True)
class Forecast:
    """The CGM trend for one live reading: projected glucose at the two horizons, and the rate."""

    low: float  # at `horizon_min`
    urgent: float  # at `urgent_horizon_min`
    rate: float  # mmol/L/min
    far: float | None = None  # at `urgent_far_min`


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
    #: consecutive readings below the low line, of `streak_device`, the last at `streak_at`
    streak: int = 0
    streak_device: str | None = None
    streak_at: datetime | None = None
    spell_start: datetime | None = None
    above_since: datetime | None = None
    urgent_ok_since: datetime | None = None
    urgent_seen: bool = False
    #: a reading below the low line since the alert opened or last re-notified
    dipped: bool = False
    #: that dip is over by the consensus rule while the alert stayed open: the next dip is news
    dip_over: bool = False
    #: the CGM trend of the latest reading (None: none yet, not from a CGM, or noise)
    trend: Forecast | None = None
    forecast_low_streak: int = 0
    forecast_urgent_streak: int = 0
    #: the last CGM reading (at, value, device): a drop is judged against it
    previous: tuple[datetime, float, str] | None = None
    #: that CGM's last 30 min, and AR2's 20-min forecast when it says urgent low
    recent: list[tuple[datetime, float]] = field(default_factory=list)
    ar2: float | None = None
    #: falling fast (or already low): one low forecast is enough; the drop since the last reading
    fast: bool = False
    drop: float | None = None
    #: which rule fired the forecast stages now ("forecast", "far", "drop", "near"): the message
    why_urgent: str = ""
    why_low: str = ""
    opened_at: datetime | None = None
    last_at: datetime | None = None
    #: the acknowledgement an urgent low was last re-notified for
    renotified_ack: datetime | None = None


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
        device: str = "",
        deliberate: bool = False,
    ) -> Decision | None:
        """One live glucose reading; a CGM reading comes with its forecast if the trend has one.
        A `deliberate` reading (a finger-prick) leaves the forecast counts alone and alerts at
        once when low."""
        s = self._state.setdefault(patient, _State())
        if s.last_at is not None and at < s.last_at:
            return None  # older than what was judged already: it is context, not news
        if s.last_at is not None and at - s.last_at > cfg.consecutive_within:
            s.spell_start = None  # a gap: nothing says the spell went on through it
        s.last_at = at
        if cgm:
            self._forecast(s, at, value, cfg, forecast, device)
        if value < cfg.low:
            if deliberate:
                s.streak = cfg.warning_after  # a finger-prick needs no second reading
            elif (
                s.streak_device == device
                and s.streak_at is not None
                and at - s.streak_at <= cfg.consecutive_within
            ):
                s.streak += 1
            else:
                s.streak = 1
            s.streak_device, s.streak_at = device, at
            s.spell_start = s.spell_start or at
            s.above_since = None
            s.dipped = True
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
        return self._decide(s, at, value, view, cfg, deliberate)

    @staticmethod
    def _forecast(
        s: _State, at: datetime, value: float, cfg: LowConfig, forecast: Forecast | None, device: str
    ) -> None:
        """The forecast stages for one CGM reading: counts, and which rule fired."""
        credible = forecast is not None and abs(forecast.rate) <= cfg.max_rate
        s.trend = forecast if credible else None
        gated = s.trend if value < cfg.predict_below else None
        previous, s.previous = s.previous, (at, value, device)
        low_soon = gated is not None and gated.low < cfg.predicted_low
        urgent_soon, why = gated is not None and gated.urgent < cfg.urgent_low, "forecast"
        if not urgent_soon and gated is not None and gated.far is not None and value < cfg.low:
            urgent_soon, why = gated.far < cfg.urgent_low, "far"
        # a steep drop between the last two readings of this CGM, at their own rate
        s.drop, drop_urgent, drop_low = None, False, False
        if gated is not None and previous is not None and previous[2] == device and cfg.drop_min > 0:
            gap = (at - previous[0]).total_seconds() / 60
            rate = (value - previous[1]) / gap if 3 <= gap <= 10 else 0.0
            if -cfg.max_rate <= rate < 0:
                s.drop = rate
                drop_urgent = value * math.exp(rate / value * cfg.drop_min) < cfg.urgent_low
                drop_low = value * math.exp(rate / value * cfg.horizon_min) < cfg.urgent_low
        if not urgent_soon and drop_urgent:
            urgent_soon, why = True, "drop"
        near = cfg.urgent_near is not None and value <= cfg.urgent_near
        if not urgent_soon and near and s.trend is not None and s.trend.rate <= 0:
            urgent_soon, why = True, "near"
        same = previous is not None and previous[2] == device
        s.recent = [p for p in s.recent if same and at - p[0] <= 2 * ar2.PAIR_WITHIN] + [(at, value)]
        s.ar2 = ar2.urgent_low(s.recent, cfg.low, cfg.max_rate) if cfg.ar2_floor else None
        if not urgent_soon and s.ar2 is not None:
            urgent_soon, why = True, "ar2"
        # already below the line, a low forecast is no guess: it needs no second reading
        s.fast = drop_low or value < cfg.low or (gated is not None and gated.rate <= -cfg.steep_rate)
        s.forecast_low_streak = s.forecast_low_streak + 1 if low_soon or drop_low else 0
        s.forecast_urgent_streak = s.forecast_urgent_streak + 1 if urgent_soon else 0
        s.why_urgent = why if urgent_soon else ""
        s.why_low = "forecast" if low_soon else "drop" if drop_low else ""

    def _decide(
        self,
        s: _State,
        at: datetime,
        value: float,
        view: EpisodeView | None,
        cfg: LowConfig,
        deliberate: bool,
    ) -> Decision | None:
        current = view.stage if view is not None else Stage.NONE
        if view is None:
            s.opened_at, s.dip_over = None, False
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
        elif s.forecast_low_streak >= (cfg.forecast_after if s.fast else cfg.predicted_after):
            predicted = Stage.PREDICTED
        target = max(measured, predicted)

        if current is Stage.NONE:
            if target is Stage.NONE:
                return None
            s.opened_at = at
            s.urgent_seen = target is Stage.URGENT
            s.dipped, s.dip_over = value < cfg.low, False
            return self._decision("open", target, value, s, cfg, deliberate)
        if s.dipped and s.above_since is not None and at - s.above_since >= cfg.end_after:
            s.dipped, s.dip_over = False, True  # the consensus says this dip is over
        if s.dip_over and target is not Stage.NONE:
            minutes = cfg.end_after.total_seconds() / 60
            s.dip_over, s.dipped = False, value < cfg.low
            s.urgent_seen = target is Stage.URGENT
            return self._decision(
                "renotify",
                target,
                value,
                s,
                cfg,
                deliberate,
                f"; a new dip after {minutes:.0f} min at or above {cfg.low:.1f}",
            )
        if target > current:
            s.urgent_seen = s.urgent_seen or target is Stage.URGENT
            return self._decision("upgrade", target, value, s, cfg, deliberate)
        if target is Stage.URGENT and not s.urgent_seen:
            s.urgent_seen = True
            minutes = cfg.end_after.total_seconds() / 60
            again = f" again, after {minutes:.0f} min or more at or above {cfg.urgent_low:.1f}"
            return self._decision("renotify", Stage.URGENT, value, s, cfg, deliberate, again)
        acknowledged = view.acknowledged_at if view is not None and view.acknowledged else None
        if (
            acknowledged is not None
            and measured is Stage.URGENT
            and current is Stage.URGENT
            and at - acknowledged >= cfg.renotify_after
            and s.renotified_ack != acknowledged
        ):
            s.renotified_ack = acknowledged
            minutes = (at - acknowledged).total_seconds() / 60
            still = f"; still below {cfg.urgent_low:.1f} {minutes:.0f} min after it was acknowledged"
            return self._decision("renotify", Stage.URGENT, value, s, cfg, deliberate, still)
        forecast_ok = s.trend is None or s.trend.low >= cfg.predicted_low
        # never over on a reading that itself calls for the alert (AR2's floor, a steep drop)
        if s.above_since is not None and forecast_ok and target is Stage.NONE:
            since = max(s.above_since, s.opened_at or s.above_since)
            if at - since >= cfg.end_after:
                minutes = (at - s.above_since).total_seconds() / 60
                s.opened_at, s.spell_start = None, None
                s.urgent_seen = s.dipped = s.dip_over = False
                return Decision(
                    "resolve",
                    current,
                    f"Episode over: glucose {value:g} mmol/L,"
                    f" at or above {cfg.low:.1f} for {minutes:.0f} min",
                    MEASURED_CODE,
                    value,
                )
        return None

    def _decision(
        self,
        act: str,
        stage: Stage,
        value: float,
        s: _State,
        cfg: LowConfig,
        deliberate: bool,
        suffix: str = "",
    ) -> Decision:
        if stage.code == FORECAST_CODE:
            shown, message = glucose_text.forecast(stage is Stage.URGENT_SOON, value, s, cfg)
        else:
            shown, message = value, glucose_text.measured(stage is Stage.URGENT, value, s, cfg, deliberate)
        return Decision(act, stage, message + suffix, stage.code, shown)
