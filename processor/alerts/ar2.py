"""Nightscout's AR2 forecast and its alarm check, ported (cgm-remote-monitor, lib/plugins/ar2.js
and the interpolation of lib/plugins/delta.js): the engine's urgent-low floor and the bench's
reference are this one implementation.

AR2 takes the last two sensor values, works in log(mg/dL / 140), steps an AR(2) model
(coefficients -0.723, 1.716) six times 5 minutes ahead, and scores the predictions by their
mean squared log10 distance from 120 mg/dL ("avgLoss", with Nightscout's 1/5 weight over six
terms kept as it is). A loss above 0.05 is a warning, above 0.10 urgent; the event is "low"
when the 20-minute prediction is below the bottom of the target range.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from telehealth.codes import MG_DL_PER_MMOL_L

BG_REF = 140.0
BG_MIN = 36
BG_MAX = 400
WARN_THRESHOLD = 0.05
URGENT_THRESHOLD = 0.10
AR = (-0.723, 1.716)


@dataclass(frozen=True)
class Ar2Alarm:
    level: str | None  # "warn", "urgent" or None
    event: str  # "low", "high" or "" (Nightscout's "Check BG")
    predicted_mgdl: tuple[int, ...]


def _mgdl_5_mins_ago(prev: tuple[float, float], current: tuple[float, float]) -> float:
    """delta.js: interpolate back to 5 minutes when the two readings are more than 9 apart."""
    elapsed = current[0] - prev[0]
    if elapsed > 9:
        return current[1] - (current[1] - prev[1]) / elapsed * 5
    return prev[1]


def forecast(prev: tuple[float, float], current: tuple[float, float]) -> tuple[list[int], float] | None:
    """Six predictions (mg/dL, 5 to 30 min) and avgLoss from two (minute, mg/dL) readings."""
    if prev[1] < BG_MIN or current[1] < BG_MIN:
        return None
    before, now = math.log(_mgdl_5_mins_ago(prev, current) / BG_REF), math.log(current[1] / BG_REF)
    predicted = []
    for _ in range(6):
        before, now = now, AR[0] * before + AR[1] * now
        predicted.append(max(BG_MIN, min(BG_MAX, round(BG_REF * math.exp(now)))))
    size = min(len(predicted) - 1, 6)
    loss = sum(1 / size * math.log10(p / 120) ** 2 for p in predicted[: size + 1])
    return predicted, loss


def check(
    prev_mmol: tuple[float, float],
    current_mmol: tuple[float, float],
    target_bottom_mgdl: float = 70,
    target_top_mgdl: float = 180,
) -> Ar2Alarm:
    """AR2's alarm for the latest reading; (minute, mmol/L) in, as a CGM reports them."""
    prev = (prev_mmol[0], prev_mmol[1] * MG_DL_PER_MMOL_L)
    current = (current_mmol[0], current_mmol[1] * MG_DL_PER_MMOL_L)
    result = forecast(prev, current)
    if result is None:
        return Ar2Alarm(None, "", ())
    predicted, loss = result
    level = "urgent" if loss > URGENT_THRESHOLD else "warn" if loss > WARN_THRESHOLD else None
    in20 = predicted[3]
    event = "high" if in20 > target_top_mgdl else "low" if in20 < target_bottom_mgdl else ""
    return Ar2Alarm(level, event if level else "", tuple(predicted))


#: the 20-minute prediction (the 4th of six 5-minute steps) is what AR2 calls a low event on
EVENT_MINUTES = 20
#: readings this far apart or more are no pair to forecast from (as "consecutive" elsewhere)
PAIR_WITHIN = timedelta(minutes=15)
#: a reading's rate is judged against every reading of this CGM from 5 to 15 minutes before it
_JUDGED = (timedelta(minutes=5), timedelta(minutes=15))


def _physiological(recent: Sequence[tuple[datetime, float]], i: int, max_rate: float) -> bool:
    at, value = recent[i]
    for t, v in recent[:i]:
        gap = at - t
        if _JUDGED[0] <= gap <= _JUDGED[1] and abs(value - v) / (gap.total_seconds() / 60) > max_rate:
            return False
    return True


def urgent_low(recent: Sequence[tuple[datetime, float]], low: float, max_rate: float) -> float | None:
    """AR2's 20-minute prediction (mmol/L) when AR2 calls an urgent low on the last two of one
    CGM's `recent` readings (oldest first, mmol/L), low being below `low`; else None.

    The engine's floor: it never raises an urgent low later than AR2 would. A pair that moved
    faster than `max_rate`, or a reading that did against any reading 5 to 15 min before it,
    is sensor noise and raises nothing, as for every other forecast rule."""
    if len(recent) < 2:
        return None
    (t0, v0), (t1, v1) = recent[-2], recent[-1]
    gap = (t1 - t0).total_seconds() / 60
    if not 0 < gap < PAIR_WITHIN.total_seconds() / 60 or abs(v1 - v0) / gap > max_rate:
        return None
    n = len(recent)
    if not (_physiological(recent, n - 1, max_rate) and _physiological(recent, n - 2, max_rate)):
        return None
    alarm = check((0.0, v0), (gap, v1), low * MG_DL_PER_MMOL_L)
    if alarm.level != "urgent" or alarm.event != "low":
        return None
    return round(alarm.predicted_mgdl[EVENT_MINUTES // 5 - 1] / MG_DL_PER_MMOL_L, 2)
