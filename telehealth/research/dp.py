"""Differential privacy for releases, with OpenDP's mechanisms (no home-made noise).

The privacy unit is the patient. In one release a patient can be in every bucket of the
asked range, once per bucket (one group per bucket: DP releases refuse `condition`, where a
patient can sit in several groups). The release covers **every cell of the declared grid**
(each bucket x each group of the grouping), empty ones included, so which cells exist says
nothing. The release's epsilon is split in four equal parts:

- distinct patients (per-cell sensitivity 1) and readings (the per-patient cap): OpenDP's
  Laplace mechanism on integer vectors (discrete Laplace);
- the sum of patients' clamped means (the code's plausible maximum): Laplace on floats;
- the median: OpenDP's private quantile (exponential mechanism over the code's values at the
  released precision), one per cell, each with the part divided by the number of buckets
  (cells of one bucket hold disjoint patients).

Each Laplace part is one vector measurement whose L1 sensitivity is per-cell sensitivity x
buckets; OpenDP reports each measurement's privacy loss at that sensitivity and the release
is refused if it exceeds the part. The mean is noisy sum / noisy patients (post-processing).
Min and max are never released. Cells whose noisy patient count is below the threshold are
suppressed: the threshold is applied to the noisy count only (post-processing), so the
suppression itself spends nothing and reveals nothing beyond the noisy count.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

import opendp.prelude as dp

from telehealth.codes import CODES
from telehealth.research.disclosure import (
    K_MIN,
    READINGS_PER_PATIENT_HOUR,
    RawCell,
    round_count,
    round_to,
    step_of,
)

dp.enable_features("contrib")

#: groups of each grouping a DP release covers, whether or not anyone is in them
AGE_BANDS = ("0-17", "18-39", "40-59", "60-79", "80+")
SEXES = ("female", "male", "other", "unknown")
PARTS = 4


def grid_groups(group_by: str, sexes: list[str]) -> tuple[str, ...]:
    """The declared groups of a grouping (a cohort limited by sex declares only those sexes)."""
    if group_by == "sex":
        return tuple(s for s in SEXES if not sexes or s in sexes)
    if group_by == "age_band":
        return AGE_BANDS
    if group_by == "none":
        return ("all",)
    raise ValueError(f"differentially private releases cannot group by {group_by}")


def full_grid(cells: list[RawCell], buckets: list[datetime], groups: tuple[str, ...]) -> list[RawCell]:
    """Every (bucket, group) of the grid, in order: the computed cell, or an empty one."""
    found = {(c.bucket, c.group): c for c in cells}
    return [found.get((b, g), RawCell(b, g, 0, 0, 0.0, ())) for b in buckets for g in groups]


def _check(loss: float, budget: float) -> None:
    if loss > budget * (1 + 1e-9):
        raise RuntimeError("OpenDP reports more privacy loss than budgeted; refusing to release")


def _laplace_counts(values: list[int], sensitivity: int, epsilon: float) -> list[int]:
    space = dp.vector_domain(dp.atom_domain(T=int)), dp.l1_distance(T=int)
    meas = dp.m.make_laplace(*space, scale=sensitivity / epsilon)
    _check(meas.map(sensitivity), epsilon)  # type: ignore[no-untyped-call]
    noisy: list[int] = meas([int(v) for v in values])
    return noisy


def _laplace_sums(values: list[float], sensitivity: float, epsilon: float) -> list[float]:
    space = dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.l1_distance(T=float)
    meas = dp.m.make_laplace(*space, scale=sensitivity / epsilon)
    _check(meas.map(sensitivity), epsilon)  # type: ignore[no-untyped-call]
    noisy: list[float] = meas([float(v) for v in values])
    return noisy


def _median(code: str, epsilon: float) -> Any:
    """OpenDP's private median over the code's values at the released precision, spending at
    most `epsilon` when one patient joins or leaves the cell."""
    low, high = CODES[code].plausible
    step = step_of(code)
    candidates = [round(i * step, 6) for i in range(math.ceil(low / step), math.floor(high / step) + 1)]
    domain = dp.vector_domain(dp.atom_domain(T=float, nan=False))

    def make(scale: float) -> Any:
        return dp.m.make_private_quantile(
            domain,
            dp.symmetric_distance(),
            dp.max_divergence(),
            candidates=candidates,
            alpha=0.5,
            scale=scale,
        )

    per_unit_scale = make(1.0).map(1)  # loss at scale 1; the loss falls as 1 / scale
    meas = make(per_unit_scale / epsilon)
    _check(meas.map(1), epsilon)
    return meas


def privatise(
    code: str, cells: list[RawCell], epsilon: float, bucket: timedelta, buckets: int
) -> list[dict[str, Any]]:
    """Noisy, rounded bodies for `cells` (the whole grid), spending exactly `epsilon` over
    `buckets` buckets."""
    if not cells:
        return []
    part = epsilon / PARTS
    hours = max(1, int(bucket.total_seconds() // 3600))
    cap = READINGS_PER_PATIENT_HOUR * hours
    low, top = CODES[code].plausible
    high = max(abs(low), abs(top))
    step = step_of(code)
    patients = _laplace_counts([c.patients for c in cells], buckets, part)
    readings = _laplace_counts([c.readings for c in cells], cap * buckets, part)
    sums = _laplace_sums([c.mean * c.patients for c in cells], high * buckets, part)
    median = _median(code, part / buckets)
    out = []
    for c, n, r, s in zip(cells, patients, readings, sums, strict=True):
        body: dict[str, Any] = {"bucket": c.bucket.isoformat(), "group": c.group, "epsilon": epsilon}
        # The median is drawn for every cell, shown or not, so the spend never depends on data.
        middle = float(median([b * step for b, k in c.histogram for _ in range(k)]))
        if n < K_MIN:
            body |= {"suppressed": True, "reason": f"noisy patient count below {K_MIN}"}
        else:
            body |= {
                "suppressed": False,
                "patients": round_count(max(0, n)),
                "readings": round_count(max(0, r)),
                "mean": round(round_to(min(max(s / n, low), top), step), 6),
                "percentiles": {"p50": round(round_to(middle, step), 6)},
                "noise_scale": {
                    "patients": buckets / part,
                    "readings": cap * buckets / part,
                    "sum": high * buckets / part,
                },
            }
        out.append(body)
    return out
