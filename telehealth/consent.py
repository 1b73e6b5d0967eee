"""Consent to secondary use: versioned records and the one decision rule. Pure: no I/O.

The same `decide` serves the processor (eligibility of each stored reading), the decision
endpoint and the research queries (who is still permitted at release time), so the three
can never disagree.

Precedence: the national opt-out beats everything; otherwise the newest version in force
(highest version whose `applies_from` has passed) is the only one that counts; within it a
deny provision overrides a permit; what no provision permits is denied. With no version in
force the deployment default applies (shipped: deny).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from telehealth.codes import CODES


class Purpose(StrEnum):
    RESEARCH = "research"
    PLANNING = "planning"
    COMMERCIAL = "commercial"


class Provision(BaseModel):
    """Permit or deny one purpose, for the listed codes (all codes when `codes` is empty)."""

    purpose: Purpose
    decision: Literal["permit", "deny"]
    codes: list[str] = Field(default_factory=list, description="e.g. glucose, spo2; empty: every code")

    @field_validator("codes")
    @classmethod
    def _known_codes(cls, codes: list[str]) -> list[str]:
        unknown = [c for c in codes if c not in CODES]
        if unknown:
            raise ValueError(f"unknown code(s) {', '.join(unknown)}; known: {', '.join(CODES)}")
        return sorted(set(codes))

    def covers(self, purpose: Purpose, code: str) -> bool:
        return self.purpose == purpose and (not self.codes or code in self.codes)


class ConsentVersion(BaseModel):
    """One stored version of a patient's consent."""

    version: int
    provisions: list[Provision]
    national_opt_out: bool
    recorded_by: str
    recorded_by_role: Literal["patient", "admin"]
    recorded_at: datetime
    applies_from: datetime


Outcome = Literal["permit", "deny", "no-consent"]


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    #: whether the reading may be used: a permit, or no record under a permitting default
    eligible: bool
    #: the consent version the decision used; None when no version was in force
    version: int | None
    reason: str


def in_force(history: Iterable[ConsentVersion], at: datetime) -> ConsentVersion | None:
    """The newest version whose `applies_from` has passed at `at`."""
    current = [v for v in history if v.applies_from <= at]
    return max(current, key=lambda v: v.version) if current else None


def decide(
    history: Sequence[ConsentVersion],
    purpose: Purpose,
    code: str,
    at: datetime,
    *,
    default_permit: bool = False,
) -> Decision:
    return decide_under(in_force(history, at), purpose, code, default_permit=default_permit)


def decide_under(
    version: ConsentVersion | None, purpose: Purpose, code: str, *, default_permit: bool = False
) -> Decision:
    """The decision for one purpose under `version`, the one in force (None: no record)."""
    if version is None:
        default = "permit" if default_permit else "deny"
        reason = f"no consent recorded; deployment default {default}"
        return Decision("no-consent", default_permit, None, reason)
    if version.national_opt_out:
        return Decision("deny", False, version.version, "national data opt-out")
    matching = [p for p in version.provisions if p.covers(purpose, code)]
    if any(p.decision == "deny" for p in matching):
        return Decision("deny", False, version.version, f"{purpose} of {code} denied")
    if matching:
        return Decision("permit", True, version.version, f"{purpose} of {code} permitted")
    return Decision("deny", False, version.version, f"{purpose} of {code} not permitted by any provision")


#: every purpose, in declaration order (iterating the enum itself is slow on the hot path)
PURPOSES = tuple(Purpose)


def eligible_purposes(
    history: Sequence[ConsentVersion], code: str, at: datetime, *, default_permit: bool = False
) -> tuple[int | None, list[str]]:
    """For one stored observation: the version in force and the purposes it may serve."""
    version = in_force(history, at)
    purposes = [
        p.value for p in PURPOSES if decide_under(version, p, code, default_permit=default_permit).eligible
    ]
    return (version.version if version else None), purposes
