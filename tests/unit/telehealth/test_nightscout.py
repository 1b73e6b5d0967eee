"""Nightscout entries to readings and back, the derived identity, the per-credential limit."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from dashboard_api.nightscout_auth import RateLimiter
from telehealth.bounds import check_context
from telehealth.checks import check_readings
from telehealth.contracts import Reason
from telehealth.nightscout import (
    EntryProblem,
    _plainly_in_bounds,
    add_deltas,
    api_secret_header,
    entry_id,
    secret_digest,
    to_entry,
    to_reading,
    uploader_battery,
)
from telehealth.storage.devices import DeviceEntry
from telehealth.topics import readings_topic

MS = 1_763_900_000_000  # 2025-11-23T12:13:20Z
NOW = datetime.fromtimestamp(MS / 1000 + 60, UTC)
XDRIP = {
    "device": "xDrip-DexcomG6",
    "date": MS,
    "dateString": "2025-11-23T12:13:20.000Z",
    "sgv": 142,
    "delta": -3.5,
    "direction": "FortyFiveDown",
    "type": "sgv",
    "filtered": 142000,
    "unfiltered": 141000,
    "rssi": 100,
    "noise": 1,
    "sysTime": "2025-11-23T12:13:20.000Z",
}


def _check(document: dict[str, object]) -> tuple[int, list[Reason]]:
    lookup = {"up-1": DeviceEntry("up-1", __import__("uuid").uuid4(), "uploader", False)}.get
    verdict = check_readings(readings_topic("up-1"), json.dumps(document).encode(), NOW, lookup)
    return len(verdict.accepted), [letter.reason for letter in verdict.rejected]


def test_an_xdrip_sgv_becomes_a_cgm_reading_in_mg_dl_that_the_gateway_checks_accept() -> None:
    reading = to_reading(XDRIP, "up-1")
    assert reading["seq"] == MS * 2
    assert reading["measured_at"] == "2025-11-23T12:13:20Z"
    assert reading["observations"] == [{"code": "glucose", "value": 142.0, "unit": "mg/dL", "source": "cgm"}]
    kept = reading["context"]["nightscout"]
    assert kept["direction"] == "FortyFiveDown" and kept["device"] == "xDrip-DexcomG6" and kept["noise"] == 1
    assert _check(reading) == (1, [])


def test_identity_is_time_and_type_so_a_reupload_has_the_same_seq() -> None:
    again = to_reading(dict(XDRIP, sgv=150, direction="Flat"), "up-1")
    meter = to_reading({"type": "mbg", "date": MS, "mbg": 140}, "up-1")
    assert again["seq"] == to_reading(XDRIP, "up-1")["seq"]
    assert meter["seq"] == MS * 2 + 1
    assert meter["observations"][0]["source"] == "smbg"
    assert entry_id("up-1", MS * 2) == entry_id("up-1", MS * 2) != entry_id("up-1", MS * 2 + 1)
    assert len(entry_id("up-1", 1)) == 24


def test_an_mmol_client_that_says_so_is_taken_in_mmol() -> None:
    reading = to_reading({"type": "mbg", "date": MS, "mbg": 7.2, "units": "mmol"}, "up-1")
    assert reading["observations"][0]["unit"] == "mmol/L"
    assert (
        to_reading({"type": "sgv", "date": MS, "sgv": 99, "units": "mg/dl"}, "up-1")["observations"][0][
            "unit"
        ]
        == "mg/dL"
    )
    with pytest.raises(EntryProblem) as problem:
        to_reading({"type": "sgv", "date": MS, "sgv": 99, "units": "furlongs"}, "up-1")
    assert problem.value.reason is Reason.UNKNOWN_UNIT


def test_date_string_stands_in_for_a_missing_date() -> None:
    reading = to_reading({"type": "sgv", "sgv": 100, "dateString": "2025-11-23T13:13:20+01:00"}, "up-1")
    assert reading["seq"] == MS * 2


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ({"type": "sgv", "date": MS}, Reason.SCHEMA_INVALID),
        ({"type": "cal", "date": MS, "slope": 1}, Reason.SCHEMA_INVALID),
        ({"type": "sgv", "sgv": 100}, Reason.SCHEMA_INVALID),
        ({"type": "sgv", "sgv": True, "date": MS}, Reason.SCHEMA_INVALID),
        ({"type": "sgv", "sgv": "high", "date": MS}, Reason.SCHEMA_INVALID),
        ({"type": "sgv", "sgv": 100, "date": -5}, Reason.TIME_OUT_OF_WINDOW),
        ({"type": "sgv", "sgv": 100, "date": 1e300}, Reason.TIME_OUT_OF_WINDOW),
        ({"type": "sgv", "sgv": 100, "dateString": "2025-11-23 12:13"}, Reason.SCHEMA_INVALID),
        ("not an object", Reason.SCHEMA_INVALID),
    ],
)
def test_what_is_no_reading_is_refused_with_a_reason(entry: object, reason: Reason) -> None:
    with pytest.raises(EntryProblem) as problem:
        to_reading(entry, "up-1")
    assert problem.value.reason is reason


def test_the_contract_bounds_still_judge_mapped_entries() -> None:
    old = to_reading({"type": "sgv", "sgv": 100, "date": 631152000000}, "up-1")  # 1990
    assert _check(old) == (0, [Reason.TIME_OUT_OF_WINDOW])
    with pytest.raises(EntryProblem) as surrogate:
        to_reading(dict(XDRIP, device="xDrip\ud800"), "up-1")
    assert surrogate.value.reason == Reason.UNSTORABLE_TEXT


#: (what the MQTT device sends in its free-form context, the same in a Nightscout entry field)
HOSTILE: dict[str, object] = {
    "nul": "a\u0000b",
    "lone surrogate": "\ud800",
    "nul in a key": {"b\u0000": 1},
    "long string": "x" * 600,
    "deep nesting": {"a": {"b": {"c": {"d": 1}}}},
    "many values": list(range(120)),
    "oversized": ["y" * 500] * 140,
}


def _nightscout_path(entry: dict[str, object]) -> list[Reason]:
    try:
        document = to_reading(entry, "up-1")
    except EntryProblem as problem:
        return [problem.reason]
    return _check(document)[1]


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_the_same_hostile_value_meets_the_same_refusal_on_both_paths(kind: str) -> None:
    value = HOSTILE[kind]
    mqtt = {
        "device_id": "up-1",
        "seq": 1,
        "measured_at": "2025-11-23T12:13:20Z",
        "observations": [{"code": "glucose", "value": 142, "unit": "mg/dL", "source": "cgm"}],
        "context": {"note": value},
    }
    mqtt_reasons = _check(mqtt)[1]
    assert len(mqtt_reasons) == 1, mqtt_reasons
    assert _nightscout_path(dict(XDRIP, note=value)) == mqtt_reasons
    if isinstance(value, str):  # in a field the entry maps, and in one it does not
        assert _nightscout_path(dict(XDRIP, device=value)) == mqtt_reasons
        assert _nightscout_path(dict(XDRIP, dateString=value)) == mqtt_reasons


@pytest.mark.parametrize("at", ["1999-12-31T23:59:59Z", "2025-11-25T12:13:21Z"])
def test_the_same_time_out_of_window_is_refused_on_both_paths(at: str) -> None:
    mqtt = {
        "device_id": "up-1",
        "seq": 1,
        "measured_at": at,
        "observations": [{"code": "glucose", "value": 142, "unit": "mg/dL", "source": "cgm"}],
    }
    ms = round(datetime.fromisoformat(at).timestamp() * 1000)
    assert _check(mqtt)[1] == [Reason.TIME_OUT_OF_WINDOW]
    assert _nightscout_path(dict(XDRIP, date=ms, dateString=at)) == [Reason.TIME_OUT_OF_WINDOW]


def test_a_stored_reading_reads_back_as_the_entry_it_came_from() -> None:
    entry = to_entry(
        device_id="up-1",
        seq=MS * 2,
        measured_at=datetime.fromtimestamp(MS / 1000, UTC),
        value_mmol=round(142 / 18.01559, 4),
        source="cgm",
        context={"nightscout": {"direction": "FortyFiveDown", "device": "xDrip-DexcomG6", "noise": 1}},
    )
    assert {k: entry[k] for k in ("type", "sgv", "date", "dateString", "direction", "device", "noise")} == {
        "type": "sgv",
        "sgv": 142,
        "date": MS,
        "dateString": "2025-11-23T12:13:20.000Z",
        "direction": "FortyFiveDown",
        "device": "xDrip-DexcomG6",
        "noise": 1,
    }
    meter = to_entry(device_id="m-1", seq=7, measured_at=NOW, value_mmol=7.2, source="smbg", context={})
    assert meter["type"] == "mbg" and meter["mbg"] == 130 and meter["device"] == "m-1"


def test_the_api_secret_is_matched_by_its_sha1_in_any_case() -> None:
    header = api_secret_header("correct horse battery")
    assert len(header) == 40
    assert secret_digest(header) == secret_digest(header.upper()) != secret_digest("correct horse battery")


def test_uploader_battery_from_xdrip_and_aaps_shapes() -> None:
    assert uploader_battery({"device": "xDrip", "uploader": {"battery": 57}}) == 57
    assert uploader_battery({"uploaderBattery": 80, "pump": {}}) == 80
    assert uploader_battery({"openaps": {"iob": {}}}) is None


def test_rate_limiter_is_a_sliding_minute_per_key() -> None:
    limiter = RateLimiter(3)
    assert [limiter.wait("a", now=t) for t in (0.0, 1.0, 2.0)] == [0.0, 0.0, 0.0]
    assert limiter.wait("a", now=3.0) == pytest.approx(57.0)
    assert limiter.wait("b", now=3.0) == 0.0
    assert limiter.wait("a", now=60.5) == 0.0


def _sgv(ms: int, sgv: int, **kept: object) -> dict[str, object]:
    return to_entry(
        device_id="up-1",
        seq=ms * 2,
        measured_at=datetime.fromtimestamp(ms / 1000, UTC),
        value_mmol=sgv / 18.0182,
        source="cgm",
        context={"nightscout": kept},
    )


def test_a_delta_is_computed_from_the_previous_cgm_entry_scaled_to_five_minutes() -> None:
    five = 300_000
    entries = [
        _sgv(MS, 130),
        _sgv(MS - 30_000, 129),  # a second uploader's copy, 30 s apart: no trend from it
        _sgv(MS - five, 120),
        _sgv(MS - 3 * five, 110),
        _sgv(MS - 7 * five, 100),
        _sgv(MS - 8 * five, 90, delta=-1.5),
    ]
    add_deltas(entries)
    assert [e["delta"] for e in entries] == [10.0, 10.0, 5.0, 0, 10.0, -1.5]


def test_a_numeric_trend_gives_the_direction_and_the_direction_a_trend() -> None:
    assert (_sgv(MS, 100, trend=2)["direction"], _sgv(MS, 100, trend=2)["trend"]) == ("SingleUp", 2)
    assert _sgv(MS, 100, direction="DoubleDown")["trend"] == 7
    assert "trend" not in _sgv(MS, 100)
    assert to_reading(dict(XDRIP, trend=5), "up-1")["context"]["nightscout"]["trend"] == 5


_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=600)
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)


@given(st.dictionaries(st.text(max_size=600), _values, max_size=110))
@hsettings(max_examples=300, deadline=None)
def test_the_quick_bounds_check_never_passes_what_the_walk_refuses(entry: dict[str, object]) -> None:
    """`check_bounds` skips the walk for plain entries; whatever it skips, the walk accepts."""
    if _plainly_in_bounds(entry, json.dumps(entry, separators=(",", ":"))):
        check_context(entry, root="entry")  # raises if the quick check was wrong
