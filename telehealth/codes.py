"""The observation codes the stream understands: units, canonical unit, LOINC, plausible range.

A new code (blood pressure, temperature, weight) is one more `CodeSpec` in `CODES`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

MG_DL_PER_MMOL_L = 18.01559


@dataclass(frozen=True)
class CodeSpec:
    code: str
    canonical_unit: str
    #: accepted unit -> factor that converts it to the canonical unit
    units: Mapping[str, float]
    loinc: str
    plausible: tuple[float, float]
    #: LOINC by `source`, where a source has its own code (CGM glucose)
    loinc_by_source: Mapping[str, str] = field(default_factory=dict)
    sources: frozenset[str] = frozenset()

    def to_canonical(self, value: float, unit: str) -> float:
        return value * self.units[unit]

    def is_plausible(self, canonical_value: float) -> bool:
        low, high = self.plausible
        return low <= canonical_value <= high

    def loinc_for(self, source: str | None) -> str:
        return self.loinc_by_source.get(source or "", self.loinc)


CODES: Mapping[str, CodeSpec] = MappingProxyType(
    {
        spec.code: spec
        for spec in (
            CodeSpec(
                code="glucose",
                canonical_unit="mmol/L",
                units={"mmol/L": 1.0, "mg/dL": 1.0 / MG_DL_PER_MMOL_L},
                loinc="15074-8",
                loinc_by_source={"cgm": "105272-9"},
                plausible=(0.5, 40.0),
                sources=frozenset({"cgm", "smbg"}),
            ),
            CodeSpec(
                code="spo2",
                canonical_unit="%",
                units={"%": 1.0},
                loinc="59408-5",
                plausible=(50.0, 100.0),
            ),
            CodeSpec(
                code="pulse",
                canonical_unit="/min",
                units={"/min": 1.0, "bpm": 1.0},
                loinc="8867-4",
                plausible=(20.0, 300.0),
            ),
        )
    }
)
