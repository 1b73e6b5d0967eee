"""Disclosure control, pseudonyms, differential privacy and exports: pure code."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from telehealth.research import dp
from telehealth.research.disclosure import RawCell, control, round_count, suppressions
from telehealth.research.export import encode
from telehealth.research.pseudonym import new_key, pseudonym

T0 = datetime(2026, 11, 23, 8, tzinfo=UTC)


def cell(group: str, patients: int, bucket: datetime = T0) -> RawCell:
    return RawCell(bucket, group, patients, patients * 12, 6.04, 4.0, 9.0, {"p50": 6.0})


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
    assert shown and all(b["noise_scale"]["patients"] == pytest.approx(3.0) for b in shown)
    # Laplace(scale 3) on 200: spread, not all equal (rounded to 5, a few distinct values)
    assert len({b["patients"] for b in shown}) > 1
    assert all(150 <= b["patients"] <= 250 for b in shown)


def test_exports_carry_the_same_rows() -> None:
    cells = [b.body | {"release_id": 7} for b in control("glucose", [cell("all", 12)], {T0: 12})]
    ndjson, _ = encode(cells, "ndjson")
    assert json.loads(ndjson.splitlines()[0])["patients"] == 10
    csv_bytes, media = encode(cells, "csv")
    assert media == "text/csv" and csv_bytes.decode().splitlines()[1].split(",")[4] == "10"
    parquet, _ = encode(cells, "parquet")
    [row] = pq.read_table(io.BytesIO(parquet)).to_pylist()
    assert row["bucket"] == T0 and row["patients"] == 10 and row["p50"] == 6.0 and row["release_id"] == 7
