"""Differential privacy for releases, with OpenDP's Laplace mechanism (no home-made noise).

The privacy unit is the patient. In one release a patient can be in every bucket of the
asked range, once per bucket (one group per bucket: DP releases refuse `condition`, where a
patient can sit in several groups). The release's epsilon is split in three equal parts:
distinct patients (per-cell sensitivity 1), readings (the per-patient cap) and the sum of
patients' clamped means (the code's plausible maximum). Each part is one vector Laplace
measurement whose L1 sensitivity is per-cell sensitivity x buckets; OpenDP checks that the
measurement's privacy loss at that sensitivity is within the part. The mean is noisy sum /
noisy patients (post-processing). Min, max and percentiles are not released under DP.
Cells whose noisy patient count is below the threshold are suppressed (post-processing, so
the suppression itself spends nothing and reveals nothing beyond the noisy count).
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import opendp.prelude as dp

from telehealth.codes import CODES
from telehealth.research.disclosure import K_MIN, READINGS_PER_PATIENT_HOUR, RawCell, round_count, round_to

dp.enable_features("contrib")


def _laplace(values: list[float], sensitivity: float, epsilon: float) -> list[float]:
    scale = sensitivity / epsilon
    space = dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.l1_distance(T=float)
    meas = dp.m.make_laplace(*space, scale=scale)
    loss: float = meas.map(sensitivity)  # type: ignore[no-untyped-call]
    if loss > epsilon * (1 + 1e-9):
        raise RuntimeError("OpenDP reports more privacy loss than budgeted; refusing to release")
    noisy: list[float] = meas([float(v) for v in values])
    return noisy


def privatise(
    code: str, cells: list[RawCell], epsilon: float, bucket: timedelta, buckets: int
) -> list[dict[str, Any]]:
    """Noisy, rounded bodies for `cells`, spending exactly `epsilon` over `buckets` buckets."""
    if not cells:
        return []
    part = epsilon / 3
    hours = max(1, int(bucket.total_seconds() // 3600))
    high = max(abs(x) for x in CODES[code].plausible)
    patients = _laplace([c.patients for c in cells], 1.0 * buckets, part)
    readings = _laplace([c.readings for c in cells], READINGS_PER_PATIENT_HOUR * hours * buckets, part)
    sums = _laplace([c.mean * c.patients for c in cells], high * buckets, part)
    low, top = CODES[code].plausible
    out = []
    for c, n, r, s in zip(cells, patients, readings, sums, strict=True):
        body: dict[str, Any] = {"bucket": c.bucket.isoformat(), "group": c.group, "epsilon": epsilon}
        if n < K_MIN:
            body |= {"suppressed": True, "reason": f"noisy patient count below {K_MIN}"}
        else:
            mean = min(max(s / n, low), top)
            body |= {
                "suppressed": False,
                "patients": round_count(max(0, math.floor(n + 0.5))),
                "readings": round_count(max(0, math.floor(r + 0.5))),
                "mean": round(round_to(mean, 0.1), 6),
                "noise_scale": {
                    "patients": buckets / part,
                    "readings": READINGS_PER_PATIENT_HOUR * hours * buckets / part,
                    "sum": high * buckets / part,
                },
            }
        out.append(body)
    return out
