"""FHIR search parameters: implicit date ranges and prefixes, tokens, references, cursors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from telehealth.fhir.search import (
    SearchError,
    TimeRange,
    decode_cursor,
    encode_cursor,
    parse_code,
    parse_count,
    parse_date,
    parse_patient,
)

DAY = datetime(2026, 12, 1, tzinfo=UTC)


def _range(*values: str) -> TimeRange:
    out = TimeRange()
    for v in values:
        parse_date(v, out)
    return out


@pytest.mark.parametrize(
    ("value", "lower", "upper"),
    [
        ("2026-12-01", DAY, DAY + timedelta(days=1)),
        ("eq2026-12-01", DAY, DAY + timedelta(days=1)),
        ("ge2026-12-01", DAY, None),
        ("gt2026-12-01", DAY + timedelta(days=1), None),
        ("lt2026-12-01", None, DAY),
        ("le2026-12-01", None, DAY + timedelta(days=1)),
        ("2026", datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
        ("2026-12", DAY, datetime(2027, 1, 1, tzinfo=UTC)),
        ("ge2026-12-01T08:00:00Z", DAY + timedelta(hours=8), None),
        ("gt2026-12-01T08:00:00Z", DAY + timedelta(hours=8, seconds=1), None),
        ("lt2026-12-01T09:00:00+01:00", None, DAY + timedelta(hours=8)),
        ("le2026-12-01T08:00Z", None, DAY + timedelta(hours=8, minutes=1)),
        ("ge2026-12-01T08:00:00.5Z", DAY + timedelta(hours=8, milliseconds=500), None),
        ("ge2026-12-01T08:00:00", DAY + timedelta(hours=8), None),  # no offset: UTC
    ],
)
def test_dates_and_prefixes(value: str, lower: datetime | None, upper: datetime | None) -> None:
    r = _range(value)
    assert (r.lower, r.upper) == (lower, upper)


def test_repeated_dates_narrow_the_range() -> None:
    r = _range("ge2026-11-01", "ge2026-12-01", "le2026-12-31", "lt2026-12-10")
    assert (r.lower, r.upper) == (DAY, DAY + timedelta(days=9))


@pytest.mark.parametrize(
    "bad",
    [
        "9999-12-31",
        "9999-12",
        "gt9999-12-31T23:59:59Z",
        "0000-01-01",
        "ne2026-12-01",
        "sa2026-12-01",
        "2026-13-01",
        "yesterday",
        "2026-12-01T25:00Z",
        "",
    ],
)
def test_bad_dates_are_refused(bad: str) -> None:
    with pytest.raises(SearchError):
        _range(bad)


def test_code_tokens() -> None:
    c = parse_code("http://loinc.org|15074-8,urn:telehealth:code|spo2,pulse,8867-4")
    assert c.loincs == {"15074-8", "pulse", "8867-4"} and c.codes == {"spo2", "pulse"}
    assert parse_code("unknown-code").codes == set()
    with pytest.raises(SearchError):
        parse_code("http://snomed.info/sct|1234")
    with pytest.raises(SearchError):
        parse_code("glucose,")


def test_patient_references() -> None:
    pid = uuid4()
    for text in (str(pid), f"Patient/{pid}", f"https://host/fhir/Patient/{pid}"):
        assert parse_patient(text) == pid
    for bad in (f"Device/{pid}", "not-an-id", "Patient/"):
        with pytest.raises(SearchError):
            parse_patient(bad)


def test_count() -> None:
    assert parse_count(None, default=100, maximum=1000) == 100
    assert parse_count("7", default=100, maximum=1000) == 7
    for bad in ("0", "1001", "-1", "ten"):
        with pytest.raises(SearchError):
            parse_count(bad, default=100, maximum=1000)


def test_cursor_round_trip_and_forgery() -> None:
    row = {"measured_at": DAY + timedelta(microseconds=7), "device_id": "cgm_1", "seq": 9, "code": "glucose"}
    assert decode_cursor(encode_cursor(row)) == (row["measured_at"], "cgm_1", 9, "glucose")
    for bad in ("", "!!!", encode_cursor(row)[:-3], "WzEsMiwzXQ"):
        with pytest.raises(SearchError):
            decode_cursor(bad)
