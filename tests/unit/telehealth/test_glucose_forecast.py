"""The dashboard draws the forecast the alert engine judged: the shared core's projection is the
processor's, value for value."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from processor.alerts.trend import FORECAST_RANGE as PROCESSOR_RANGE
from processor.alerts.trend import project as processor_project
from telehealth.glucose_forecast import FORECAST_RANGE, forecast_points, project


@given(
    level=st.floats(0.0, 40.0, allow_nan=False),
    rate=st.floats(-1.0, 1.0, allow_nan=False),
    minutes=st.integers(0, 60),
)
def test_the_projection_is_the_processors(level: float, rate: float, minutes: int) -> None:
    assert project(level, rate, minutes) == processor_project(level, rate, minutes)


def test_same_clamp_and_points_up_to_the_horizon() -> None:
    assert FORECAST_RANGE == PROCESSOR_RANGE
    points = forecast_points(5.0, -0.1, 25)
    assert [m for m, _ in points] == [0, 5, 10, 15, 20, 25]
    assert points[0][1] == 5.0 and points[-1][1] == round(processor_project(5.0, -0.1, 25), 3)
    assert [m for m, _ in forecast_points(5.0, 0.0, 12)] == [0, 5, 10, 12]
