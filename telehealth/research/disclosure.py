"""Statistical disclosure control of aggregate cells. Pure: no I/O.

A cell is one (time bucket, cohort group). Each patient contributes at most one value to a
cell (their own mean over the bucket, from values already clamped to the plausible range)
and a bounded number of readings, so no patient dominates a cell. Then, per bucket row:

1. primary suppression: fewer than `k` distinct patients;
2. complement suppression: a cell whose row total differs from it by 1..k-1 patients, since
   the ungrouped total minus the cell would describe that small group;
3. secondary suppression: if exactly one cell of a row is suppressed, the released cell with
   the fewest patients is suppressed too, so no total or margin minus the released cells
   recovers a suppressed one;
4. counts rounded to the nearest `base`, statistics rounded to the code's precision.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

K_MIN = 10
ROUND_BASE = 5
#: patient-level reading cap per hour of bucket (a 1-minute CGM)
READINGS_PER_PATIENT_HOUR = 60
PRECISION = {"glucose": 0.1, "spo2": 1.0, "pulse": 1.0}


@dataclass(frozen=True)
class RawCell:
    bucket: datetime
    group: str
    patients: int
    readings: int
    mean: float
    min: float
    max: float
    percentiles: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Released:
    bucket: datetime
    group: str
    suppressed: bool
    reason: str | None
    body: dict[str, Any]


def round_to(value: float, base: float) -> float:
    """Round half away from zero to a multiple of `base` (deterministic, unlike banker's)."""
    return math.floor(value / base + 0.5) * base


def round_count(n: int, base: int = ROUND_BASE) -> int:
    return int(round_to(n, base))


def _precision(code: str, value: float) -> float:
    step = PRECISION.get(code, 0.1)
    return round(round_to(value, step), 6)


def suppressions(
    cells: list[RawCell], totals: dict[datetime, int], *, k: int = K_MIN
) -> dict[tuple[datetime, str], str]:
    """(bucket, group) -> why it is suppressed."""
    out: dict[tuple[datetime, str], str] = {}
    rows: dict[datetime, list[RawCell]] = defaultdict(list)
    for c in cells:
        rows[c.bucket].append(c)
    for bucket, row in rows.items():
        total = totals.get(bucket, max(c.patients for c in row))
        for c in row:
            if c.patients < k:
                out[(bucket, c.group)] = f"fewer than {k} patients"
            elif 0 < total - c.patients < k:
                out[(bucket, c.group)] = f"the rest of the row is fewer than {k} patients"
        hidden = [c for c in row if (bucket, c.group) in out]
        shown = sorted((c for c in row if (bucket, c.group) not in out), key=lambda c: (c.patients, c.group))
        if len(hidden) == 1 and shown:
            out[(bucket, shown[0].group)] = "secondary: protects a suppressed cell"
    return out


def control(
    code: str, cells: list[RawCell], totals: dict[datetime, int], *, k: int = K_MIN
) -> list[Released]:
    """Every cell, released (rounded) or suppressed (no figures), in bucket and group order."""
    hidden = suppressions(cells, totals, k=k)
    out = []
    for c in sorted(cells, key=lambda c: (c.bucket, c.group)):
        reason = hidden.get((c.bucket, c.group))
        body: dict[str, Any] = {"bucket": c.bucket.isoformat(), "group": c.group, "suppressed": bool(reason)}
        if reason:
            body["reason"] = reason
        else:
            body |= {
                "patients": round_count(c.patients),
                "readings": round_count(c.readings),
                "mean": _precision(code, c.mean),
                "min": _precision(code, c.min),
                "max": _precision(code, c.max),
                "percentiles": {p: _precision(code, v) for p, v in c.percentiles.items()},
            }
        out.append(Released(c.bucket, c.group, bool(reason), reason, body))
    return out
