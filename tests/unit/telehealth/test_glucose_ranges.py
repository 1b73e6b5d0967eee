"""Consensus ranges on whole mg/dL: every value a device can send lands where the consensus of
its own unit puts it (70 and 180 mg/dL in range, 54 mg/dL level 1, 3.9 and 10.0 mmol/L in range)."""

from __future__ import annotations

import pytest

from telehealth.codes import CODES, MG_DL_PER_MMOL_L
from telehealth.glucose_ranges import Band, Trend, band_of, trend_of, whole_mg_dl
from tests.paths import ROOT


def consensus_mg_dl(mg: int) -> Band:
    """Battelino et al. 2019, in mg/dL: <54, 54-69, 70-180, 181-250, >250."""
    if mg < 54:
        return Band.VERY_LOW
    if mg <= 69:
        return Band.LOW
    if mg <= 180:
        return Band.TARGET
    if mg <= 250:
        return Band.HIGH
    return Band.VERY_HIGH


def consensus_mmol_l(tenths: int) -> Band:
    """The same in mmol/L, on tenths (3.0 is 30): <3.0, 3.0-3.8, 3.9-10.0, 10.1-13.9, >13.9."""
    if tenths < 30:
        return Band.VERY_LOW
    if tenths <= 38:
        return Band.LOW
    if tenths <= 100:
        return Band.TARGET
    if tenths <= 139:
        return Band.HIGH
    return Band.VERY_HIGH


def test_every_whole_mg_dl_value_stored_as_mmol_l_keeps_its_band() -> None:
    spec = CODES["glucose"]
    for mg in range(10, 721):
        stored = spec.to_canonical(mg, "mg/dL")  # exactly what the normaliser stores
        assert whole_mg_dl(stored) == mg
        assert band_of(stored) is consensus_mg_dl(mg), mg
        assert band_of(mg / MG_DL_PER_MMOL_L) is consensus_mg_dl(mg), mg


def test_every_one_decimal_mmol_l_value_keeps_its_band() -> None:
    for tenths in range(5, 401):
        assert band_of(tenths / 10) is consensus_mmol_l(tenths), tenths / 10


@pytest.mark.parametrize(
    ("stored", "band"),
    [
        (70 / MG_DL_PER_MMOL_L, Band.TARGET),  # 3.8855: below 3.9 by the old mmol/L comparison
        (54 / MG_DL_PER_MMOL_L, Band.LOW),  # 2.9974: below 3.0 by the old comparison
        (180 / MG_DL_PER_MMOL_L, Band.TARGET),
        (250 / MG_DL_PER_MMOL_L, Band.HIGH),
        (3.9, Band.TARGET),
        (10.0, Band.TARGET),
        (3.0, Band.LOW),
        (13.9, Band.HIGH),
    ],
)
def test_the_boundaries_the_issue_names(stored: float, band: Band) -> None:
    assert band_of(stored) is band


@pytest.mark.parametrize(
    ("mg_per_min", "trend"),
    [
        (0.0, Trend.STEADY),
        (0.99, Trend.STEADY),
        (-0.99, Trend.STEADY),
        (1.0, Trend.RISING_SLOWLY),
        (-1.5, Trend.FALLING_SLOWLY),
        (2.0, Trend.RISING),
        (-2.9, Trend.FALLING),
        (3.0, Trend.RISING_QUICKLY),
        (-4.0, Trend.FALLING_QUICKLY),
    ],
)
def test_trend_arrows_follow_the_rate_in_mg_dl_per_minute(mg_per_min: float, trend: Trend) -> None:
    assert trend_of(mg_per_min / MG_DL_PER_MMOL_L) is trend


def test_the_page_converts_and_bands_with_the_same_numbers() -> None:
    """units.js converts with the factor the API stores with and rounds to whole mg/dL alike."""
    units = (ROOT / "dashboard_api" / "static" / "units.js").read_text()
    assert f"MG_DL_PER_MMOL_L = {MG_DL_PER_MMOL_L};" in units
    assert "Math.floor(mmol * MG_DL_PER_MMOL_L + 0.5)" in units
    for line in ("mg < 54", "mg < 70", "mg <= 180", "mg <= 250"):
        assert line in units
