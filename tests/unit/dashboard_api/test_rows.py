"""Rows served straight from the database give the bytes the response models would give."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import TypeAdapter

from dashboard_api.rows import RowShapeError, rows_response
from dashboard_api.schemas import BucketPoint, ObservationPoint

POINTS = [
    {
        "measured_at": datetime(2026, 12, 6, 8, 0, 0, 123456, tzinfo=UTC),
        "code": "glucose",
        "value": 7.0,
        "unit": "mmol/L",
        "quality": [],
        "device_id": "cgm-1",
        "seq": 1,
    },
    {
        "measured_at": datetime(2026, 12, 6, 9, 5, tzinfo=timezone(timedelta(hours=1))),
        "code": "spo2",
        "value": float("nan"),
        "unit": "%",
        "quality": ["implausible", "artefact"],
        "device_id": None,
        "seq": None,
    },
]


def test_points_serialise_as_the_models_do() -> None:
    models = [ObservationPoint(**row) for row in POINTS]  # type: ignore[arg-type]
    assert bytes(rows_response(POINTS, ObservationPoint).body) == TypeAdapter(
        list[ObservationPoint]
    ).dump_json(models)


def test_buckets_serialise_as_the_models_do() -> None:
    rows = [
        {
            "bucket": datetime(2026, 12, 6, tzinfo=UTC),
            "code": "glucose",
            "count": 12,
            "mean": 6.25,
            "min": 4.0,
            "max": 9.5,
            "unit": "mmol/L",
        }
    ]
    body = bytes(rows_response(rows, BucketPoint).body)
    assert body == TypeAdapter(list[BucketPoint]).dump_json([BucketPoint(**rows[0])])  # type: ignore[arg-type]


def test_no_rows_is_an_empty_array() -> None:
    assert bytes(rows_response([], ObservationPoint).body) == b"[]"


def test_a_select_that_no_longer_matches_the_model_fails_loudly() -> None:
    renamed = [{("at" if k == "measured_at" else k): v for k, v in POINTS[0].items()}]
    with pytest.raises(RowShapeError, match="ObservationPoint"):
        rows_response(renamed, ObservationPoint)
    reordered = [dict(reversed(list(POINTS[0].items())))]
    with pytest.raises(RowShapeError):
        rows_response(reordered, ObservationPoint)
