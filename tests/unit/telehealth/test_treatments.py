"""Nightscout treatments to what is stored: identity, numbers, time, bounds."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from telehealth.contracts import Reason
from telehealth.treatments import TreatmentProblem, derived_identifier, public_id, served, to_treatment

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def test_the_clients_own_identifier_names_the_treatment() -> None:
    loop = to_treatment(
        {
            "eventType": "Carb Correction",
            "created_at": "2026-12-07T11:00:00Z",
            "carbs": 45,
            "syncIdentifier": "abc",
        },
        NOW,
    )
    assert (loop.identifier, loop.carbs_g, loop.created_at) == (
        "abc",
        45.0,
        datetime(2026, 12, 7, 11, tzinfo=UTC),
    )
    aaps = to_treatment(
        {"eventType": "Note", "date": 1_796_641_200_000, "identifier": "v3-id", "_id": "x"}, NOW
    )
    assert aaps.identifier == "v3-id"
    xdrip = to_treatment({"uuid": "u-1", "carbs": 20, "created_at": "2026-12-07T11:00:00.000+0000"}, NOW)
    assert (xdrip.identifier, xdrip.event_type) == ("u-1", "<none>")


def test_without_one_type_and_time_are_the_identity_as_in_nightscout() -> None:
    a = to_treatment({"eventType": "Note", "created_at": "2026-12-07T11:00:00Z", "notes": "a"}, NOW)
    b = to_treatment({"eventType": "Note", "created_at": "2026-12-07T11:00:00.000Z", "notes": "b"}, NOW)
    c = to_treatment({"eventType": "Exercise", "created_at": "2026-12-07T11:00:00Z"}, NOW)
    assert a.identifier == b.identifier == derived_identifier("Note", a.created_at) != c.identifier


def test_insulin_basal_and_durations() -> None:
    basal = to_treatment(
        {
            "eventType": "Temp Basal",
            "created_at": "2026-12-07T11:00:00Z",
            "rate": 0.8,
            "durationInMilliseconds": 1_800_000,
        },
        NOW,
    )
    assert (basal.basal_u_per_h, basal.duration_min, basal.insulin_u) == (0.8, 30.0, None)
    bolus = to_treatment({"eventType": "Correction Bolus", "mills": 1_796_641_200_000, "insulin": "2.5"}, NOW)
    assert bolus.insulin_u == 2.5


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ({"eventType": "Note", "notes": "x"}, Reason.SCHEMA_INVALID),  # no time
        ({"eventType": "Note", "created_at": "1999-12-31T23:00:00Z"}, Reason.TIME_OUT_OF_WINDOW),
        ({"eventType": "Note", "created_at": "2026-12-09T12:00:00Z"}, Reason.TIME_OUT_OF_WINDOW),
        (
            {"eventType": "Note", "created_at": "2026-12-07T11:00:00Z", "notes": "a\u0000"},
            Reason.UNSTORABLE_TEXT,
        ),
        ({"eventType": "Note", "created_at": "2026-12-07T11:00:00Z", "k\ud800": 1}, Reason.UNSTORABLE_TEXT),
        (
            {"eventType": "Meal Bolus", "created_at": "2026-12-07T11:00:00Z", "insulin": -1},
            Reason.SCHEMA_INVALID,
        ),
        (
            {"eventType": "Note", "created_at": "2026-12-07T11:00:00Z", "notes": "y" * 70_000},
            Reason.OVERSIZED,
        ),
        (
            {"eventType": "Note", "created_at": "2026-12-07T11:00:00Z", "a": [[[[[[[1]]]]]]]},
            Reason.CONTEXT_TOO_LARGE,
        ),
        ({"eventType": "x" * 65, "created_at": "2026-12-07T11:00:00Z"}, Reason.SCHEMA_INVALID),
    ],
)
def test_what_is_no_storable_treatment_says_why(document: dict[str, object], reason: Reason) -> None:
    with pytest.raises(TreatmentProblem) as problem:
        to_treatment(document, NOW)
    assert problem.value.reason == reason


def test_served_with_the_servers_fields() -> None:
    at = datetime(2026, 12, 7, 11, tzinfo=UTC)
    out = served("abc", at, {"eventType": "Note", "notes": "n"}, srv_created=NOW, srv_modified=NOW)
    assert out["_id"] == public_id("abc") and len(out["_id"]) == 24 and out["identifier"] == "abc"
    assert out["created_at"] == "2026-12-07T11:00:00.000Z" and out["mills"] == out["date"]
    assert public_id("0123456789abcdef01234567") == "0123456789abcdef01234567"
    assert "isValid" not in out
