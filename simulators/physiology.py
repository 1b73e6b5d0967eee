"""Signals for simulated patients. Deterministic under a seed; time is in simulated minutes."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field


@dataclass
class GlucoseModel:
    """CGM glucose in mmol/L: a baseline with meal rises, sensor noise, and an optional hypo."""

    seed: int
    baseline: float = 6.5
    hypo_from_min: float | None = None
    hypo_rate_per_min: float = -0.12
    hypo_floor: float = 2.4
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._phase = self._rng.uniform(0, 2 * math.pi)

    def value(self, minute: float) -> float:
        meals = 1.8 * max(0.0, math.sin(2 * math.pi * minute / 360 + self._phase))
        level = self.baseline + meals + self._rng.gauss(0, 0.15)
        if self.hypo_from_min is not None and minute >= self.hypo_from_min:
            fall = self.baseline + self.hypo_rate_per_min * (minute - self.hypo_from_min)
            level = max(self.hypo_floor, min(level, fall)) + self._rng.gauss(0, 0.05)
        return round(min(max(level, 1.0), 30.0), 1)


@dataclass
class OximetryModel:
    """SpO2 (%) and pulse (/min) for a healthy adult at rest."""

    seed: int
    spo2_mean: float = 96.5
    pulse_mean: float = 72.0
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def value(self, minute: float) -> tuple[int, int]:
        spo2 = min(100.0, self.spo2_mean + self._rng.gauss(0, 0.8))
        pulse = self.pulse_mean + 6 * math.sin(minute / 47) + self._rng.gauss(0, 3)
        return round(spo2), round(pulse)
