"""Per-patient alert thresholds: the documented defaults (docs/alerts.md) and validated overrides.

Shared by the API (which stores versions) and the processor (which builds rules from them).
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: NEWS2 SpO2 scales: (warning at or below, urgent at or below)
SPO2_SCALES = {1: (93.0, 91.0), 2: (87.0, 85.0)}


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    glucose_urgent_low: float = Field(3.0, ge=0.5, le=40, description="mmol/L, below is urgent")
    glucose_low: float = Field(3.9, ge=0.5, le=40, description="mmol/L, below is a warning")
    glucose_high: float = Field(13.9, ge=0.5, le=40, description="mmol/L, above is a warning")
    glucose_predicted_low: float | None = Field(
        None,
        ge=0.5,
        le=40,
        description="mmol/L: a CGM forecast below this within glucose_predicted_minutes is a predicted"
        " low; default: glucose_low",
    )
    glucose_predicted_minutes: int = Field(
        20, ge=5, le=60, description="how far ahead the CGM forecast looks for a predicted low"
    )
    glucose_predicted_readings: int = Field(
        2,
        ge=1,
        le=6,
        description="CGM readings in a row whose forecast must be low before a predicted low is raised"
        " (one is enough when glucose falls fast)",
    )
    glucose_urgent_near: float | None = Field(
        None,
        ge=0.5,
        le=40,
        description="mmol/L: a CGM reading at or below this that is not rising is an urgent low soon;"
        " default: glucose_urgent_low + 0.4 (3.4); set it to glucose_urgent_low to turn the rule off",
    )
    glucose_drop_minutes: int = Field(
        15,
        ge=0,
        le=30,
        description="a drop between two CGM readings that, at its own rate, reaches glucose_urgent_low"
        " within this many minutes is an urgent low soon; 0 turns the rule off",
    )
    glucose_ar2_floor: bool = Field(
        True,
        description="an urgent low soon whenever Nightscout's AR2 forecast (last two CGM readings) calls"
        " an urgent low below glucose_low within 20 min, so alerts are never later than AR2",
    )
    spo2_scale: Literal[1, 2] = Field(1, description="NEWS2 scale; 2 for confirmed hypercapnic failure")
    spo2_warning: float | None = Field(None, ge=50, le=100, description="% at or below; default by scale")
    spo2_urgent: float | None = Field(None, ge=50, le=100, description="% at or below; default by scale")
    pulse_low_urgent: float = Field(40, ge=20, le=300, description="/min at or below")
    pulse_low_warning: float = Field(50, ge=20, le=300, description="/min at or below")
    pulse_high_warning: float = Field(111, ge=20, le=300, description="/min at or above")
    pulse_high_urgent: float = Field(131, ge=20, le=300, description="/min at or above")
    warning_after: int = Field(2, ge=1, le=20, description="consecutive breaching readings for a warning")
    glucose_low_minutes: int = Field(
        15, ge=1, le=120, description="or this many minutes below the low line without clearing it"
    )
    glucose_episode_end_minutes: int = Field(
        15, ge=1, le=120, description="minutes at or above the low line that end a hypoglycaemia episode"
    )
    glucose_urgent_renotify_minutes: int = Field(
        30,
        ge=5,
        le=240,
        description="an acknowledged urgent low still below the urgent line is notified again after this",
    )

    @property
    def predicted_low_line(self) -> float:
        return self.glucose_low if self.glucose_predicted_low is None else self.glucose_predicted_low

    @property
    def urgent_near_line(self) -> float:
        if self.glucose_urgent_near is not None:
            return self.glucose_urgent_near
        return min(round(self.glucose_urgent_low + 0.4, 2), self.glucose_low)

    @property
    def spo2_limits(self) -> tuple[float, float]:
        warning, urgent = SPO2_SCALES[self.spo2_scale]
        return (
            self.spo2_warning if self.spo2_warning is not None else warning,
            self.spo2_urgent if self.spo2_urgent is not None else urgent,
        )

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        problems = []
        if not self.glucose_urgent_low < self.glucose_low < self.glucose_high:
            problems.append("glucose_urgent_low < glucose_low < glucose_high")
        if not self.glucose_urgent_low <= self.predicted_low_line <= self.glucose_low:
            problems.append("glucose_urgent_low <= glucose_predicted_low <= glucose_low")
        if not self.glucose_urgent_low <= self.urgent_near_line <= self.glucose_low:
            problems.append("glucose_urgent_low <= glucose_urgent_near <= glucose_low")
        warning, urgent = self.spo2_limits
        if not urgent < warning:
            problems.append("spo2_urgent < spo2_warning")
        if not (
            self.pulse_low_urgent < self.pulse_low_warning < self.pulse_high_warning < self.pulse_high_urgent
        ):
            problems.append("pulse_low_urgent < pulse_low_warning < pulse_high_warning < pulse_high_urgent")
        if problems:
            raise ValueError("thresholds must satisfy " + " and ".join(problems))
        return self
