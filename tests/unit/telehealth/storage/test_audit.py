"""The audit chain's canonical form and hash, which `telehealth audit verify` recomputes."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID

import pytest
from fastapi import HTTPException
from hypothesis import given
from hypothesis import strategies as st

from dashboard_api.routes.patients import parse_bucket
from telehealth.storage.audit import GENESIS, Entry, _clean_detail, chain_hash

PATIENT = UUID("12345678-1234-5678-1234-567812345678")


def _content(**change: object) -> bytes:
    fields: dict[str, object] = {
        "id": 7,
        "at": datetime(2026, 11, 23, 10, 0, 0, 123456, tzinfo=UTC),
        "actor_id": 3,
        "actor": "dr-a",
        "role": "clinician",
        "purpose": "direct-care",
        "patient_id": PATIENT,
        "action": "observations.read",
        "detail": {"code": "glucose", "bucket": None},
    }
    merged = fields | change
    row_id = merged.pop("id")
    return Entry(**merged).canonical_content(row_id)  # type: ignore[arg-type]


def test_canonical_content_is_sorted_compact_json_in_utc() -> None:
    text = _content().decode()
    assert text.startswith(
        '{"action":"observations.read","actor":"dr-a","actor_id":3,"at":"2026-11-23T10:00:00.123456+00:00"'
    )
    assert " " not in text
    # The same instant in another zone, and detail keys in another order, hash identically.
    plus_one = datetime(2026, 11, 23, 11, 0, 0, 123456, tzinfo=timezone(timedelta(hours=1)))
    assert _content(at=plus_one, detail={"bucket": None, "code": "glucose"}) == _content()


@pytest.mark.parametrize(
    "change",
    [
        {"actor": "dr-b"},
        {"purpose": "research"},
        {"patient_id": None},
        {"detail": {"code": "spo2"}},
        {"id": 8},
    ],
)
def test_every_field_is_covered_by_the_hash(change: dict[str, object]) -> None:
    assert chain_hash(GENESIS, _content(**change)) != chain_hash(GENESIS, _content())


def test_each_hash_covers_the_previous_one() -> None:
    first = chain_hash(GENESIS, _content(id=1))
    assert first == hashlib.sha256(GENESIS + _content(id=1)).digest()
    assert chain_hash(first, _content(id=2)) != chain_hash(GENESIS, _content(id=2))


def test_detail_is_plain_json_without_nul() -> None:
    assert _clean_detail({"b": 1, "a": [PATIENT]}) == {"a": [str(PATIENT)], "b": 1}
    with pytest.raises(ValueError, match="NUL"):
        _clean_detail({"note": "a\x00b"})
    with pytest.raises(ValueError):
        _clean_detail({"value": float("nan")})


@pytest.mark.parametrize("text", ["999999999999d", "99999999999999999999999999s", "0m", "32d", "5 parsecs"])
def test_absurd_buckets_are_a_422_not_an_overflow(text: str) -> None:
    with pytest.raises(HTTPException) as caught:
        parse_bucket(text)
    assert caught.value.status_code == 422


def test_buckets_in_range_parse() -> None:
    assert parse_bucket("5m") == timedelta(minutes=5)
    assert parse_bucket("31d") == timedelta(days=31)


_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=20)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)


@given(
    id=st.integers(min_value=1, max_value=2**62),
    actor=_text,
    role=_text,
    purpose=_text,
    action=_text,
    actor_id=st.none() | st.integers(min_value=1, max_value=2**62),
    patient_id=st.none() | st.uuids(),
    detail=st.dictionaries(_text, _json, max_size=4),
)
def test_the_parts_around_the_id_rebuild_the_canonical_json_rows_were_hashed_with(
    id: int,
    actor: str,
    role: str,
    purpose: str,
    action: str,
    actor_id: int | None,
    patient_id: UUID | None,
    detail: dict[str, object],
) -> None:
    """The database hashes before || id || after (audit_append); rows written before it did
    were hashed over one json.dumps of the whole row, and must still verify."""
    at = datetime(2026, 12, 6, 8, 0, 0, 1, tzinfo=UTC)
    whole = {
        "id": id,
        "at": at.isoformat(timespec="microseconds"),
        "actor_id": actor_id,
        "actor": actor,
        "role": role,
        "purpose": purpose,
        "patient_id": str(patient_id) if patient_id else None,
        "action": action,
        "detail": detail,
    }
    expected = json.dumps(whole, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    entry = Entry(at, actor_id, actor, role, purpose, patient_id, action, detail)
    before, after = entry.canonical_parts()
    assert before + str(id).encode() + after == expected.encode()
    assert entry.canonical_content(id) == expected.encode()
