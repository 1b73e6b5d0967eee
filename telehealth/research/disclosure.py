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

No released figure is one patient's value: min and max are never released, and the only
quantiles are the quartiles, each the mean of the `K_MIN` patient values around its rank,
released only while those windows are disjoint and leave at least `K_MIN` patients outside
them (see `window_quantiles`), so no combination of a cell's figures isolates fewer than
`K_MIN` patients. A figure that, at the released precision, equals the value of fewer than
`K_MIN` patients is withheld (null) by coincidence.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import accumulate
from typing import Any

K_MIN = 10
ROUND_BASE = 5
#: patient-level reading cap per hour of bucket (a 1-minute CGM)
READINGS_PER_PATIENT_HOUR = 60
PRECISION = {"glucose": 0.1, "spo2": 1.0, "pulse": 1.0}
#: the only quantiles released without differential privacy (percent)
QUARTILES = (25, 50, 75)


def step_of(code: str) -> float:
    """The released precision, also the rollups' bin width (`research_step` in SQL)."""
    return 0.1 if code == "glucose" else 1.0


@dataclass(frozen=True)
class RawCell:
    bucket: datetime
    group: str
    patients: int
    readings: int
    mean: float
    #: patients' means at the released precision: (bin, patients), ascending; value = bin x step
    histogram: tuple[tuple[int, int], ...] = field(default_factory=tuple)


def _windows(n: int, percentiles: tuple[int, ...] | list[int], k: int) -> dict[int, tuple[int, int]]:
    """Rank windows [first, last] (1-based, `k` wide) for the quantiles that may be released:
    the median first, then quartiles while every window is disjoint from the others and at
    least `k` patients stay outside all of them."""
    out: dict[int, tuple[int, int]] = {}
    for p in sorted(percentiles, key=lambda p: (abs(p - 50), p)):
        rank = max(1, -(-p * n // 100))
        first = min(max(1, rank - (k - 1) // 2), n - k + 1)
        window = (first, first + k - 1)
        if first < 1 or any(not (window[1] < a or b < window[0]) for a, b in out.values()):
            continue
        if n - k * (len(out) + 1) < k:
            continue
        out[p] = window
    return out


def _rank_sum(bins: Sequence[int], cumulative: Sequence[int], first: int, last: int) -> int:
    """Sum of the bins at ranks first..last (1-based, inclusive); `cumulative[i]` counts the
    patients in bins 0..i. The first bin is found by bisection, so a window costs the few bins
    it spans, not a walk from the lowest bin (a release of 1,440 cells walked 180,000 bins)."""
    total = 0
    i = bisect_left(cumulative, first)
    below = cumulative[i - 1] if i else 0
    while i < len(bins):
        overlap = min(cumulative[i], last) - max(below + 1, first) + 1
        if overlap > 0:
            total += overlap * bins[i]
        if cumulative[i] >= last:
            break
        below = cumulative[i]
        i += 1
    return total


def window_quantiles(
    histogram: tuple[tuple[int, int], ...], n: int, step: float, percentiles: list[int], *, k: int = K_MIN
) -> dict[str, float]:
    """Each allowed quantile as the mean of the `k` patient values around its nearest rank."""
    bins, counts = zip(*histogram, strict=True) if histogram else ((), ())
    cumulative = list(accumulate(counts))
    if (cumulative[-1] if cumulative else 0) != n:
        return {}
    return {
        f"p{p}": _rank_sum(bins, cumulative, a, b) * step / k
        for p, (a, b) in sorted(_windows(n, percentiles, k).items())
    }


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
    cells: list[RawCell],
    totals: dict[datetime, int],
    *,
    k: int = K_MIN,
    hidden_first: dict[tuple[datetime, str], str] | None = None,
) -> dict[tuple[datetime, str], str]:
    """(bucket, group) -> why it is suppressed."""
    out: dict[tuple[datetime, str], str] = dict(hidden_first or {})
    rows: dict[datetime, list[RawCell]] = defaultdict(list)
    for c in cells:
        rows[c.bucket].append(c)
    for bucket, row in rows.items():
        total = totals.get(bucket, max(c.patients for c in row))
        for c in row:
            if (bucket, c.group) in out:
                continue
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
    code: str,
    cells: list[RawCell],
    totals: dict[datetime, int],
    *,
    percentiles: list[int] | None = None,
    hidden_first: dict[tuple[datetime, str], str] | None = None,
    k: int = K_MIN,
) -> list[Released]:
    """Every cell, released (rounded) or suppressed (no figures), in bucket and group order.
    `hidden_first`: cells suppressed before the row rules run (e.g. by the differencing check)."""
    hidden = suppressions(cells, totals, k=k, hidden_first=hidden_first)
    asked = list(QUARTILES if percentiles is None else percentiles)
    out = []
    for c in sorted(cells, key=lambda c: (c.bucket, c.group)):
        reason = hidden.get((c.bucket, c.group))
        body: dict[str, Any] = {"bucket": c.bucket.isoformat(), "group": c.group, "suppressed": bool(reason)}
        if reason:
            body["reason"] = reason
        else:
            step = step_of(code)
            shared = dict(c.histogram)
            quantiles = window_quantiles(c.histogram, c.patients, step, asked, k=k)
            figures = {"mean": _precision(code, c.mean)} | {
                p: _precision(code, v) for p, v in quantiles.items()
            }
            # A figure that coincides with the value of fewer than k patients is withheld too.
            kept = {name: v for name, v in figures.items() if not 0 < shared.get(round(v / step), 0) < k}
            body |= {
                "patients": round_count(c.patients),
                "readings": round_count(c.readings),
                "mean": kept.get("mean"),
                "percentiles": {p: v for p, v in kept.items() if p != "mean"},
            }
        out.append(Released(c.bucket, c.group, bool(reason), reason, body))
    return out
