"""Disclosure control, pseudonyms, differential privacy and exports: pure code."""

from __future__ import annotations

import io
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telehealth.research import dp
from telehealth.research.disclosure import (
    RawCell,
    _windows,
    control,
    round_count,
    suppressions,
    window_quantiles,
)
from telehealth.research.export import encode
from telehealth.research.pseudonym import new_key, pseudonym

T0 = datetime(2026, 11, 23, 8, tzinfo=UTC)


def cell(group: str, patients: int, bucket: datetime = T0) -> RawCell:
    return RawCell(bucket, group, patients, patients * 12, 6.0, ((60, patients),))


def test_counts_round_to_the_nearest_five_half_up() -> None:
    assert [round_count(n) for n in (10, 12, 13, 17, 22, 23, 25)] == [10, 10, 15, 15, 20, 25, 25]


def test_small_cells_and_their_complements_are_suppressed() -> None:
    cells = [cell("female", 12), cell("male", 3)]
    hidden = suppressions(cells, {T0: 15})
    assert set(hidden) == {(T0, "female"), (T0, "male")}
    assert "rest of the row" in hidden[(T0, "female")]


def test_one_suppressed_cell_takes_the_smallest_released_one_with_it() -> None:
    cells = [cell("18-39", 12), cell("40-59", 11), cell("80+", 4)]
    released = {r.group: r for r in control("glucose", cells, {T0: 27})}
    assert released["80+"].suppressed and released["40-59"].suppressed
    assert not released["18-39"].suppressed
    assert released["18-39"].body["patients"] == 10 and released["18-39"].body["mean"] == 6.0
    assert "mean" not in released["80+"].body and "patients" not in released["40-59"].body


@given(st.lists(st.integers(min_value=1, max_value=60), min_size=1, max_size=6))
def test_no_row_total_recovers_a_single_suppressed_cell(sizes: list[int]) -> None:
    """For any partition of a bucket, the total minus the released cells is never exactly one
    suppressed cell, and no released cell has fewer than 10 patients."""
    cells = [cell(f"g{i}", n) for i, n in enumerate(sizes)]
    hidden = suppressions(cells, {T0: sum(sizes)})
    shown = [c for c in cells if (T0, c.group) not in hidden]
    assert all(c.patients >= 10 for c in shown)
    if shown:  # (a lone small row releases nothing at all)
        assert len(hidden) != 1
        rest = sum(sizes) - sum(c.patients for c in shown)
        assert rest == 0 or rest >= 10 or len(hidden) >= 2


def test_pseudonyms_are_stable_within_and_differ_between_projects() -> None:
    patient, a, b = uuid4(), new_key(), new_key()
    assert pseudonym(a, patient) == pseudonym(a, patient)
    assert pseudonym(a, patient) != pseudonym(b, patient)
    assert str(patient) not in pseudonym(a, patient)


def test_dp_release_states_epsilon_and_adds_noise_of_the_stated_scale() -> None:
    cells = [cell("all", 200, T0 + timedelta(hours=h)) for h in range(200)]
    bodies = dp.privatise("glucose", cells, 1.0, timedelta(hours=1), buckets=1)
    assert all(b["epsilon"] == 1.0 and "min" not in b for b in bodies)
    shown = [b for b in bodies if not b["suppressed"]]
    assert shown and all(b["noise_scale"]["patients"] == pytest.approx(4.0) for b in shown)
    # every patient's mean is 6.0: the private median lands near it
    assert sum(abs(b["percentiles"]["p50"] - 6.0) <= 1.0 for b in shown) >= 0.9 * len(shown)
    # Laplace(scale 4) on 200: spread, not all equal (rounded to 5, a few distinct values)
    assert len({b["patients"] for b in shown}) > 1
    assert all(150 <= b["patients"] <= 250 for b in shown)


def test_a_dp_release_covers_the_whole_grid_with_noised_counts() -> None:
    """An empty cell and a one-patient cell come out alike: both present, both noised."""
    hours = [T0, T0 + timedelta(hours=1)]
    grid = dp.full_grid([RawCell(hours[1], "all", 1, 3, 30.0, ((300, 1),))], hours, ("all",))
    assert [(c.bucket, c.patients) for c in grid] == [(hours[0], 0), (hours[1], 1)]
    draws = [dp.privatise("glucose", grid, 1.0, timedelta(hours=1), buckets=2) for _ in range(200)]
    assert all(len(bodies) == 2 for bodies in draws)
    # the noise is real: an empty cell passes the threshold now and then at this epsilon
    assert any(not bodies[0]["suppressed"] for bodies in draws)
    assert dp.grid_groups("sex", []) == dp.SEXES and dp.grid_groups("sex", ["female"]) == ("female",)
    with pytest.raises(ValueError, match="condition"):
        dp.grid_groups("condition", [])


def test_exports_carry_the_same_rows() -> None:
    cells = [b.body | {"release_id": 7} for b in control("glucose", [cell("all", 21)], {T0: 21})]
    ndjson, _ = encode(cells, "ndjson")
    assert json.loads(ndjson.splitlines()[0])["patients"] == 20
    csv_bytes, media = encode(cells, "csv")
    assert media == "text/csv" and csv_bytes.decode().splitlines()[1].split(",")[4] == "20"
    parquet, _ = encode(cells, "parquet")
    [row] = pq.read_table(io.BytesIO(parquet)).to_pylist()
    assert row["bucket"] == T0 and row["patients"] == 20 and row["p50"] == 6.0 and row["release_id"] == 7


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=20, max_value=300), min_size=1, max_size=80))
def test_no_released_figure_is_a_single_patients_value(bins: list[int]) -> None:
    """Random cohorts (patients' means in 0.1 mmol/L bins): every released statistic is the mean
    of at least 10 patients, the quantile windows are disjoint and leave at least 10 patients
    out, and no figure equals a value that fewer than 10 patients share."""
    histogram = tuple(sorted(Counter(bins).items()))
    n = len(bins)
    raw = RawCell(T0, "all", n, n * 3, sum(bins) * 0.1 / n, histogram)
    [released] = control("glucose", [raw], {T0: n})
    body = released.body
    if n < 10:
        assert released.suppressed and "mean" not in body
        return
    assert not ({"min", "max"} & set(body))
    ordered = sorted(bins)
    figures = [body["mean"], *body["percentiles"].values()]
    for value in (f for f in figures if f is not None):
        assert Counter(bins)[round(value / 0.1)] == 0 or Counter(bins)[round(value / 0.1)] >= 10
    windows = []
    for name, value in body["percentiles"].items():
        candidates = [
            (a, a + 10)
            for a in range(n - 9)
            if abs(round(sum(ordered[a : a + 10]) / 100, 6) - value) <= 0.05 + 1e-9
        ]
        assert candidates, (name, value)
        windows.append(candidates)
    assert n - 10 * len(windows) >= 10 or not windows
    assert set(body["percentiles"]) <= {"p25", "p50", "p75"}


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(min_value=20, max_value=300), min_size=1, max_size=400),
    st.lists(st.integers(min_value=1, max_value=99), min_size=1, max_size=5, unique=True),
    st.integers(min_value=1, max_value=12),
)
def test_window_quantiles_are_the_means_of_the_ranked_values(
    values: list[int], percentiles: list[int], k: int
) -> None:
    """The histogram walk (bisection to the window's first bin) gives each window's mean of the
    patients' values ranked first..last, as sorting every value would."""
    histogram = tuple(sorted(Counter(values).items()))
    ordered = sorted(values)
    want = {
        f"p{p}": sum(ordered[a - 1 : b]) * 0.1 / k
        for p, (a, b) in _windows(len(values), percentiles, k).items()
    }
    assert window_quantiles(histogram, len(values), 0.1, percentiles, k=k) == pytest.approx(want)
    assert window_quantiles(histogram, len(values) + 1, 0.1, percentiles, k=k) == {}  # counts disagree


def test_any_percentile_outside_the_quartiles_is_never_computed() -> None:
    histogram = tuple((60 + i, 1) for i in range(12))
    [released] = control(
        "glucose", [RawCell(T0, "all", 12, 36, 6.55, histogram)], {T0: 12}, percentiles=[1, 99]
    )
    assert released.body["percentiles"] == {}
