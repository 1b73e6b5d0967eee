"""The consensus glucose ranges (Battelino et al., Diabetes Care 2019) and the trend arrow.

The consensus draws its lines at 54, 70, 180 and 250 mg/dL (3.0, 3.9, 10.0 and 13.9 mmol/L).
Readings are stored in mmol/L (mg/dL ÷ 18.01559), so a CGM's 70 mg/dL is stored as 3.8855 and
its 54 as 2.9974: compared with 3.9 and 3.0 they would land one band too low. A reading's band
is therefore decided on its value in whole mg/dL (rounded to the nearest, as a mg/dL device
shows it). For every one-decimal mmol/L value this gives the band of the mmol/L lines too
(3.9 is 70.3, 10.0 is 180.2, 3.0 is 54.05 and 13.9 is 250.4 mg/dL), so a reading lands where
the consensus puts it whichever unit its device reports in (tests/unit/telehealth/test_glucose_ranges.py
checks every value of both kinds).
"""

from __future__ import annotations

import math
from enum import StrEnum

from telehealth.codes import MG_DL_PER_MMOL_L

#: consensus lines in mg/dL: below VERY_LOW is level 2 hypoglycaemia, below LOW level 1;
#: TARGET_HIGH is the top of the target range, above VERY_HIGH is level 2 hyperglycaemia
VERY_LOW_MG_DL = 54
LOW_MG_DL = 70
TARGET_HIGH_MG_DL = 180
VERY_HIGH_MG_DL = 250


class Band(StrEnum):
    VERY_LOW = "very_low"  # < 54 mg/dL (< 3.0 mmol/L), level 2 hypoglycaemia
    LOW = "low"  # 54-69 mg/dL (3.0-3.8 mmol/L), level 1
    TARGET = "target"  # 70-180 mg/dL (3.9-10.0 mmol/L)
    HIGH = "high"  # 181-250 mg/dL (10.1-13.9 mmol/L), level 1 hyperglycaemia
    VERY_HIGH = "very_high"  # > 250 mg/dL (> 13.9 mmol/L), level 2


def whole_mg_dl(mmol_l: float) -> int:
    """A stored mmol/L value as the whole mg/dL a device would show (halves round up)."""
    return math.floor(mmol_l * MG_DL_PER_MMOL_L + 0.5)


def band_of(mmol_l: float) -> Band:
    mg = whole_mg_dl(mmol_l)
    if mg < VERY_LOW_MG_DL:
        return Band.VERY_LOW
    if mg < LOW_MG_DL:
        return Band.LOW
    if mg <= TARGET_HIGH_MG_DL:
        return Band.TARGET
    if mg <= VERY_HIGH_MG_DL:
        return Band.HIGH
    return Band.VERY_HIGH


def whole_mg_dl_sql(column: str, factor_param: str = "mg_dl") -> str:
    """The same rounding in SQL; the factor is passed as a float8 parameter so that PostgreSQL
    multiplies the same two doubles Python does."""
    return f"floor({column} * %({factor_param})s::float8 + 0.5)"


# ---- trend arrows ---------------------------------------------------------------------------

#: mg/dL per minute at which the arrow changes, as CGM makers draw them (Dexcom: -> within
#: 1 mg/dL/min, diagonal 1-2, single 2-3, double beyond 3)
_ARROW_STEPS = (1.0, 2.0, 3.0)


class Trend(StrEnum):
    FALLING_QUICKLY = "falling_quickly"
    FALLING = "falling"
    FALLING_SLOWLY = "falling_slowly"
    STEADY = "steady"
    RISING_SLOWLY = "rising_slowly"
    RISING = "rising"
    RISING_QUICKLY = "rising_quickly"


def trend_of(rate_mmol_l_per_min: float) -> Trend:
    """The arrow for a rate of change in mmol/L/min (compared in mg/dL/min)."""
    rate = rate_mmol_l_per_min * MG_DL_PER_MMOL_L
    slow, mid, fast = _ARROW_STEPS
    magnitude = abs(rate)
    if magnitude < slow:
        return Trend.STEADY
    rising = rate > 0
    if magnitude < mid:
        return Trend.RISING_SLOWLY if rising else Trend.FALLING_SLOWLY
    if magnitude < fast:
        return Trend.RISING if rising else Trend.FALLING
    return Trend.RISING_QUICKLY if rising else Trend.FALLING_QUICKLY
