"""Simulated physiology and sensors. Deterministic under a seed; time is in simulated minutes
from midnight of day 0, so meals, the dawn phenomenon and spot checks fall at clock times.

Glucose (mmol/L) is a baseline plus effects with simple absorption curves: meals (a rise
peaking ~45 min after eating), the insulin that covers them (peaking ~75 min, so T1 patients
dip after over-corrected meals), the dawn phenomenon (04:00-08:00), exercise and scripted
events (an insulin overdose drives a hypo). Sensors see it through their own faults: a CGM
lags ~10 min behind blood and adds AR(1) noise; a finger-prick meter has ~4 % error.
SpO2 and pulse follow a healthy or COPD profile with desaturation events and motion artefacts.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DAY = 24 * 60


def _kernel(x: float, peak: float) -> float:
    """A unit-height absorption curve, 0 before the event, highest `peak` minutes after it."""
    return 0.0 if x <= 0 else (x / peak) * math.exp(1 - x / peak)


@dataclass(frozen=True)
class GlucoseProfile:
    kind: Literal["t1", "t2"]
    baseline: float
    mmol_per_10g: float  # rise per 10 g of carbohydrate at the peak
    insulin_cover: float  # share of a meal's rise the bolus/medication takes back (later)
    dawn: float
    drift: float


T1 = GlucoseProfile("t1", baseline=8.4, mmol_per_10g=1.3, insulin_cover=0.9, dawn=1.5, drift=1.8)
T2 = GlucoseProfile("t2", baseline=8.5, mmol_per_10g=0.45, insulin_cover=0.45, dawn=0.8, drift=0.5)


class GlucoseEvent(BaseModel):
    """A scripted episode: `overdose` or `exercise` lowers glucose by `size` mmol/L at its
    peak, `peak_min` minutes after `at_min` (40 by default; a rapid-acting insulin overdose
    acts over hours, so a slower peak keeps the fall at rates glucose really falls)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["overdose", "exercise"]
    at_min: float
    size: float = Field(gt=0, le=15)
    peak_min: float = Field(40, ge=10, le=240)


@dataclass(frozen=True)
class _Day:
    meals: tuple[tuple[float, float, float], ...]  # (minute of day, grams, dose accuracy)
    exercise: tuple[float, float] | None  # (start minute, intensity mmol/L)


@dataclass
class Glucose:
    """Blood glucose of one simulated patient, a pure function of time once seeded."""

    profile: GlucoseProfile
    seed: int
    events: tuple[GlucoseEvent, ...] = ()
    _days: dict[int, _Day] = field(default_factory=dict, repr=False)

    def _day(self, d: int) -> _Day:
        if d not in self._days:
            rng = random.Random(self.seed * 7919 + d)
            meals = tuple(
                (clock + rng.uniform(-40, 40), rng.uniform(low, high), rng.uniform(0.55, 1.3))
                for clock, low, high in ((7.5 * 60, 30, 60), (12.5 * 60, 40, 80), (18.5 * 60, 50, 90))
            )
            exercise = (rng.uniform(15 * 60, 19 * 60), rng.uniform(1.0, 2.5)) if rng.random() < 0.4 else None
            self._days[d] = _Day(meals, exercise)
        return self._days[d]

    def at(self, minute: float) -> float:
        p = self.profile
        phase = (self.seed % 97) / 97 * 2 * math.pi
        level = p.baseline + p.drift * math.sin(2 * math.pi * minute / (17 * 60) + phase)
        clock = minute % DAY
        if 4 * 60 <= clock <= 8 * 60:
            level += p.dawn * math.sin(math.pi * (clock - 4 * 60) / (4 * 60))
        day = int(minute // DAY)
        for d in (day - 1, day):
            schedule = self._day(d)
            for at, grams, accuracy in schedule.meals:
                x = minute - (d * DAY + at)
                rise = grams / 10 * p.mmol_per_10g
                level += rise * _kernel(x, 45) - rise * p.insulin_cover * accuracy * _kernel(x, 75)
            if schedule.exercise is not None:
                start, intensity = schedule.exercise
                level -= intensity * _kernel(minute - (d * DAY + start), 40)
        for event in self.events:
            level -= event.size * _kernel(minute - event.at_min, event.peak_min)
        return min(max(level, 1.2), 30.0)


@dataclass
class CgmSensor:
    """A CGM: interstitial lag behind blood, AR(1) sensor noise, readings clamped to 2.2-22.2."""

    glucose: Glucose
    seed: int
    interval_min: int = 5
    lag_min: float = 10.0
    noise_sd: float = 0.25
    _rng: random.Random = field(init=False, repr=False)
    _tissue: float | None = field(default=None, repr=False)
    _noise: float = field(default=0.0, repr=False)
    _last: float | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def read(self, minute: float) -> float:
        """Call with increasing minutes; the lag integrates between calls."""
        blood = self.glucose.at(minute)
        if self._tissue is None or self._last is None:
            self._tissue = self.glucose.at(minute - self.lag_min)
        else:
            step = min(1.0, (minute - self._last) / self.lag_min)
            self._tissue += (blood - self._tissue) * step
        self._last = minute
        self._noise = 0.7 * self._noise + self._rng.gauss(0, self.noise_sd * math.sqrt(1 - 0.49))
        return round(min(max(self._tissue + self._noise, 2.2), 22.2), 1)


@dataclass
class FingerPrick:
    """A glucometer (SMBG): capillary blood, ~4 % error, a few times a day."""

    glucose: Glucose
    seed: int
    times: tuple[float, ...] = (7 * 60, 12 * 60, 18 * 60, 22 * 60)
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def due(self, previous_min: float, now_min: float) -> bool:
        """Whether a scheduled check falls in (previous, now]."""
        return any(
            previous_min < d * DAY + t <= now_min
            for d in range(int(previous_min // DAY), int(now_min // DAY) + 1)
            for t in self.times
        )

    def read(self, minute: float) -> float:
        return round(min(max(self.glucose.at(minute) * (1 + self._rng.gauss(0, 0.04)), 1.1), 33.3), 1)


@dataclass(frozen=True)
class OximetryProfile:
    kind: Literal["healthy", "copd"]
    spo2: float
    spo2_sd: float
    pulse: float
    desaturations_per_day: float


HEALTHY = OximetryProfile("healthy", spo2=97.0, spo2_sd=0.8, pulse=70.0, desaturations_per_day=0.0)
COPD = OximetryProfile("copd", spo2=91.0, spo2_sd=1.2, pulse=84.0, desaturations_per_day=2.0)


@dataclass
class Oximeter:
    """SpO2 (%) and pulse (/min): profile, desaturation episodes, and motion artefacts."""

    profile: OximetryProfile
    seed: int
    artefact_rate: float = 0.005
    _rng: random.Random = field(init=False, repr=False)
    _episodes: dict[int, tuple[tuple[float, float, float], ...]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def _desaturations(self, day: int) -> tuple[tuple[float, float, float], ...]:
        if day not in self._episodes:
            rng = random.Random(self.seed * 104_729 + day)
            count = sum(rng.random() < self.profile.desaturations_per_day / 4 for _ in range(4))
            self._episodes[day] = tuple(
                (day * DAY + rng.uniform(0, DAY), rng.uniform(10, 25), rng.uniform(4, 8))
                for _ in range(count)
            )
        return self._episodes[day]

    #: what the last `read` reported about its own signal (perfusion index, %), and whether
    #: it was an artefact (ground truth for tests; a device knows only the perfusion index)
    last_context: dict[str, float] = field(default_factory=dict, repr=False)
    last_artefact: bool = field(default=False, repr=False)

    def read(self, minute: float) -> tuple[int, int]:
        p = self.profile
        spo2 = p.spo2 + self._rng.gauss(0, p.spo2_sd)
        pulse = p.pulse + 8 * math.sin(2 * math.pi * (minute % DAY - 4 * 60) / DAY) + self._rng.gauss(0, 3)
        for start, length, depth in self._desaturations(int(minute // DAY)):
            if start <= minute <= start + length:
                spo2 -= depth * math.sin(math.pi * (minute - start) / length)
                pulse += depth * 2
        perfusion = self._rng.uniform(1.0, 6.0)
        # A loose probe or a moving hand: one reading, recovered at the next. (Two low readings
        # in a row are a confirmed low to the alert engine, by design: see docs/alerts.md.)
        self.last_artefact = self._rng.random() < self.artefact_rate and not self.last_artefact
        if self.last_artefact:
            spo2 -= self._rng.uniform(8, 20)
            pulse += self._rng.uniform(20, 50)
            if self._rng.random() < 0.7:  # most probes notice the weak pulsatile signal
                perfusion = self._rng.uniform(0.05, 0.25)
        self.last_context = {"perfusion_index": round(perfusion, 2)}
        return round(min(max(spo2, 60.0), 100.0)), round(min(max(pulse, 30.0), 220.0))
