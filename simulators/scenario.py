"""Named scenarios: a cohort, scripted events, device behaviour and the alerts expected.

`readings()` is the one generator of what the simulated devices measure, used by the live
simulator and by the tests that check the alert engine against the labels, so both see the
same ground truth for a seed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from simulators.physiology import (
    COPD,
    DAY,
    HEALTHY,
    T1,
    T2,
    CgmSensor,
    FingerPrick,
    Glucose,
    GlucoseEvent,
    Oximeter,
)
from telehealth.thresholds import Thresholds

START_MIN = 8 * 60  # scenarios start at 08:00 on day 0
#: what interval devices upload when a live run starts into a scenario (minutes, at most)
HISTORY_MIN = 30.0
PROFILES = {"t1": T1, "t2": T2}
OXIMETRY = {"healthy": HEALTHY, "copd": COPD}
SPOT_CHECKS = (8 * 60, 14 * 60, 20 * 60)  # spot-check oximetry: three times a day

Kind = Literal["cgm", "glucometer", "oximeter"]
KINDS: tuple[Kind, ...] = ("cgm", "glucometer", "oximeter")
#: Battery drain per hour of use: a CGM transmitter lasts about two weeks, a worn oximeter two days.
DRAIN_PCT_PER_H: dict[Kind, float] = {"cgm": 0.3, "glucometer": 0.01, "oximeter": 2.0}


class Outage(BaseModel):
    """The device loses its connection at `at_min` (the broker sends its last will) and
    comes back `for_min` later, uploading what it measured meanwhile."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    at_min: float = Field(ge=0)
    for_min: float = Field(gt=0)


class Faults(BaseModel):
    """Faults on request, each a probability per reading unless said otherwise."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dropout: float = Field(0, ge=0, le=1, description="measured but never sent (lost on the device)")
    duplicate: float = Field(0, ge=0, le=1, description="sent twice")
    reorder: float = Field(0, ge=0, le=1, description="held back and sent after the next reading")
    malformed: float = Field(0, ge=0, le=1, description="sent as truncated JSON")
    oversized: float = Field(0, ge=0, le=1, description="padded past the 64 KiB message limit")
    impersonate: float = Field(0, ge=0, le=1, description="names another device's id in the payload")
    clock_skew_s: float = Field(0, description="device clock offset applied to measured_at")
    outages: list[Outage] = Field(default_factory=list)


class DeviceSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    battery_pct: float = Field(100, ge=0, le=100)
    drain_pct_per_h: float | None = Field(None, ge=0, description="default by kind")
    faults: Faults = Faults()


class PatientSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    glucose: Literal["t1", "t2"] = "t1"
    oximetry: Literal["healthy", "copd"] = "healthy"
    cgm: bool = True
    cgm_interval_min: Literal[1, 5] = 5
    glucometer: bool = False
    oximeter: Literal["continuous", "spot", "none"] = "continuous"
    oximeter_interval_min: int = Field(1, ge=1)
    #: chance per oximeter reading of a spurious dip from a loose probe or a moving hand
    motion_artefacts: float = Field(0, ge=0, le=0.2)
    events: list[GlucoseEvent] = Field(default_factory=list)
    devices: dict[Kind, DeviceSpec] = Field(default_factory=dict)

    @property
    def kinds(self) -> list[Kind]:
        wanted = {"cgm": self.cgm, "glucometer": self.glucometer, "oximeter": self.oximeter != "none"}
        return [k for k in KINDS if wanted[k]]

    @property
    def thresholds(self) -> Thresholds | None:
        """COPD patients are scored on NEWS2 SpO2 scale 2 (target 88-92 %); others use defaults."""
        return Thresholds(spo2_scale=2) if self.oximetry == "copd" else None

    def device(self, kind: Kind) -> DeviceSpec:
        return self.devices.get(kind, DeviceSpec())


class ExpectedAlert(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    patient: int
    rule: str
    severity: Literal["warning", "urgent"]


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str
    duration_min: int = Field(gt=0)
    #: a live run (`telehealth simulate`, `up`) begins this far into the scenario, near its
    #: event, at true physiological rates; devices first upload what they measured in the
    #: `HISTORY_MIN` before (store-and-forward), so charts and trends have context at once
    start_min: float = Field(0, ge=0)
    patients: list[PatientSpec] = Field(min_length=1)
    expected_alerts: list[ExpectedAlert]

    def patient(self, index: int) -> PatientSpec:
        """Scripted patients first; beyond them, quiet fillers alternating T1 and T2."""
        if index < len(self.patients):
            return self.patients[index]
        return PatientSpec(glucose="t1" if index % 2 else "t2")


def names() -> list[str]:
    folder = resources.files("simulators") / "scenarios"
    return sorted(f.name.removesuffix(".yaml") for f in folder.iterdir() if f.name.endswith(".yaml"))


def load(name: str) -> Scenario:
    folder = resources.files("simulators") / "scenarios"
    path = folder / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"unknown scenario {name!r}; shipped: {', '.join(names())}")
    return Scenario.model_validate(yaml.safe_load(path.read_text()))


@dataclass(frozen=True)
class Sample:
    """One reading a device takes: when (simulated minute), which device, what."""

    minute: float
    patient: int
    kind: Kind
    observations: list[dict[str, Any]]
    context: dict[str, Any] = field(default_factory=dict)
    #: ground truth: a motion artefact (the device reports only its signal, in `context`)
    artefact: bool = False


def _next_daily(minute: float, times: tuple[float, ...]) -> float:
    day = int(minute // DAY)
    return min(d * DAY + t for d in (day, day + 1) for t in times if d * DAY + t > minute)


class Cohort:
    """The sensors of every patient in a scenario."""

    def __init__(self, scenario: Scenario, patients: int, seed: int) -> None:
        self.scenario = scenario
        self._cgm: dict[int, CgmSensor] = {}
        self._meter: dict[int, FingerPrick] = {}
        self._oxi: dict[int, Oximeter] = {}
        self.specs = {i: scenario.patient(i) for i in range(max(patients, len(scenario.patients)))}
        for i, spec in self.specs.items():
            events = tuple(e.model_copy(update={"at_min": START_MIN + e.at_min}) for e in spec.events)
            glucose = Glucose(PROFILES[spec.glucose], seed * 100_003 + i, events)
            self._cgm[i] = CgmSensor(glucose, seed * 300_007 + i, interval_min=spec.cgm_interval_min)
            self._meter[i] = FingerPrick(glucose, seed * 400_009 + i)
            self._oxi[i] = Oximeter(
                OXIMETRY[spec.oximetry],
                seed * 200_003 + i,
                artefact_rate=spec.motion_artefacts,
            )

    @property
    def size(self) -> int:
        return len(self.specs)

    def interval(self, patient: int, kind: Kind) -> int | None:
        """Minutes between readings, or None for a device that measures at set times of day."""
        spec = self.specs[patient]
        if kind == "glucometer" or (kind == "oximeter" and spec.oximeter == "spot"):
            return None
        return spec.cgm_interval_min if kind == "cgm" else spec.oximeter_interval_min

    def next_due(self, patient: int, kind: Kind, after: float) -> float:
        """The first simulated minute strictly after `after` at which the device measures."""
        interval = self.interval(patient, kind)
        if interval is None:
            times = self._meter[patient].times if kind == "glucometer" else SPOT_CHECKS
            return _next_daily(after, times)
        return (after // interval + 1) * interval

    def sample(self, patient: int, kind: Kind, minute: float) -> Sample:
        if kind == "cgm":
            value = self._cgm[patient].read(minute)
            obs = [{"code": "glucose", "value": value, "unit": "mmol/L", "source": "cgm"}]
        elif kind == "glucometer":
            value = self._meter[patient].read(minute)
            obs = [{"code": "glucose", "value": value, "unit": "mmol/L", "source": "smbg"}]
        else:
            oximeter = self._oxi[patient]
            spo2, pulse = oximeter.read(minute)
            obs = [
                {"code": "spo2", "value": spo2, "unit": "%"},
                {"code": "pulse", "value": pulse, "unit": "/min"},
            ]
            return Sample(minute, patient, kind, obs, dict(oximeter.last_context), oximeter.last_artefact)
        return Sample(minute, patient, kind, obs)


def readings(scenario: Scenario, *, seed: int = 1, patients: int = 0) -> Iterator[Sample]:
    """Every reading of the scenario in time order (minutes from START_MIN)."""
    cohort = Cohort(scenario, patients, seed)
    end = START_MIN + scenario.duration_min
    due = {
        (p, kind): cohort.next_due(p, kind, START_MIN - 1e-9)
        for p in range(cohort.size)
        for kind in cohort.specs[p].kinds
    }
    while due:
        (p, kind), minute = min(due.items(), key=lambda item: (item[1], item[0][0], KINDS.index(item[0][1])))
        if minute > end:
            break
        yield cohort.sample(p, kind, minute)
        due[(p, kind)] = cohort.next_due(p, kind, minute)
