"""Named scenarios: a cohort, scripted events and the alerts they are expected to raise.

`readings()` is the one generator of what the simulated devices send, used by the live
simulator and by the tests that check the alert engine against the labels, so both see the
same ground truth for a seed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from simulators.physiology import COPD, HEALTHY, T1, T2, CgmSensor, Glucose, GlucoseEvent, Oximeter

START_MIN = 8 * 60  # scenarios start at 08:00 on day 0
PROFILES = {"t1": T1, "t2": T2}
OXIMETRY = {"healthy": HEALTHY, "copd": COPD}


class PatientSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    glucose: Literal["t1", "t2"] = "t1"
    oximetry: Literal["healthy", "copd"] = "healthy"
    cgm_interval_min: Literal[1, 5] = 5
    oximeter_interval_min: int = Field(1, ge=1)
    #: spurious dips from a loose probe; the engine has no artefact rejection yet, so they alarm
    motion_artefacts: bool = False
    events: list[GlucoseEvent] = Field(default_factory=list)


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
    """One reading a device sends: when (simulated minute), which device, what."""

    minute: float
    patient: int
    kind: Literal["cgm", "oximeter"]
    observations: list[dict[str, Any]]


class Cohort:
    """The sensors of every patient in a scenario, stepped in time order."""

    def __init__(self, scenario: Scenario, patients: int, seed: int) -> None:
        self.scenario = scenario
        self._cgm: dict[int, CgmSensor] = {}
        self._oxi: dict[int, Oximeter] = {}
        self._specs = {i: scenario.patient(i) for i in range(max(patients, len(scenario.patients)))}
        for i, spec in self._specs.items():
            events = tuple(e.model_copy(update={"at_min": START_MIN + e.at_min}) for e in spec.events)
            glucose = Glucose(PROFILES[spec.glucose], seed * 100_003 + i, events)
            self._cgm[i] = CgmSensor(glucose, seed * 300_007 + i, interval_min=spec.cgm_interval_min)
            self._oxi[i] = Oximeter(
                OXIMETRY[spec.oximetry],
                seed * 200_003 + i,
                artefact_rate=0.005 if spec.motion_artefacts else 0.0,
            )

    @property
    def size(self) -> int:
        return len(self._specs)

    def interval(self, patient: int, kind: str) -> int:
        spec = self._specs[patient]
        return spec.cgm_interval_min if kind == "cgm" else spec.oximeter_interval_min

    def sample(self, patient: int, kind: str, minute: float) -> Sample:
        if kind == "cgm":
            value = self._cgm[patient].read(minute)
            return Sample(
                minute,
                patient,
                "cgm",
                [{"code": "glucose", "value": value, "unit": "mmol/L", "source": "cgm"}],
            )
        spo2, pulse = self._oxi[patient].read(minute)
        return Sample(
            minute,
            patient,
            "oximeter",
            [{"code": "spo2", "value": spo2, "unit": "%"}, {"code": "pulse", "value": pulse, "unit": "/min"}],
        )


def readings(scenario: Scenario, *, seed: int = 1, patients: int = 0) -> Iterator[Sample]:
    """Every reading of the scenario in time order (minutes from START_MIN)."""
    cohort = Cohort(scenario, patients, seed)
    for minute in range(scenario.duration_min + 1):
        for p in range(cohort.size):
            for kind in ("cgm", "oximeter"):
                if minute % cohort.interval(p, kind) == 0:
                    yield cohort.sample(p, kind, START_MIN + minute)
