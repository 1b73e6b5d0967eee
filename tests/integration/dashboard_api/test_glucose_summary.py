"""The consensus CGM summary against an independent computation on a designed series."""

from __future__ import annotations

import math
import random
import statistics
from collections import defaultdict
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest

from telehealth.codes import CODES, MG_DL_PER_MMOL_L
from tests.factories import auth, make_device, make_patient, make_user

_INSERT = """INSERT INTO readings (patient_id, measured_at, code, value, unit, loinc, source, device_id,
                                   seq, received_at, quality)
             VALUES (%s, %s, 'glucose', %s, 'mmol/L', '105272-9', %s, %s, %s, %s, %s)"""


def _designed() -> list[float]:
    """200 CGM values: 140 in 3.9-10.0 (both ends included), 20 in [3.0, 3.9), 10 below 3.0,
    20 in (10.0, 13.9], 10 above 13.9. TIR 70 %, <3.9 15 %, <3.0 5 %, >10 15 %, >13.9 5 %."""
    values = [3.9, 10.0] + [4.0 + (k % 60) * 0.1 for k in range(138)]
    values += [3.0] + [3.5] * 19
    values += [2.5] * 10
    values += [13.9] + [12.0] * 19
    values += [15.0] * 10
    return values


def _percentile(ordered: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (what percentile_cont does)."""
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (position - low) * (ordered[high] - ordered[low])


async def test_glucose_summary_matches_an_independent_computation(
    db: psycopg.AsyncConnection[Any], http: httpx.AsyncClient
) -> None:
    patient = await make_patient(db, "team-cgm")
    cgm = await make_device(db, patient, "cgm")  # expected every 300 s
    meter = await make_device(db, patient, "glucometer")
    clinician = await make_user(db, "clinician", ["team-cgm"])
    own = await make_user(db, "patient", patient_id=patient)
    outsider = await make_user(db, "clinician", ["team-not-cgm"])
    researcher = await make_user(db, "researcher")

    now = datetime.now(UTC)
    values = _designed()
    times = [now - timedelta(minutes=3 + 5 * k) for k in range(len(values))]
    # One reading without a source counts: its device is a CGM.
    rows = [
        (patient, t, v, None if k == 7 else "cgm", cgm.device_id, k, t, ["late"] if k == 5 else [])
        for k, (t, v) in enumerate(zip(times, values, strict=True))
    ]
    # Left out: finger-prick values (one named, one without a source from a meter), an
    # implausible one, and one older than the window.
    rows.append((patient, now - timedelta(minutes=7), 2.0, "smbg", meter.device_id, 1, now, []))
    rows.append((patient, now - timedelta(minutes=8), 2.0, None, meter.device_id, 2, now, []))
    rows.append((patient, now - timedelta(minutes=9), 45.0, "cgm", cgm.device_id, 900, now, ["implausible"]))
    rows.append((patient, now - timedelta(days=15), 2.0, "cgm", cgm.device_id, 901, now, []))
    async with db.cursor() as cur:
        await cur.executemany(_INSERT, rows)

    url = f"/api/v1/patients/{patient}/glucose-summary"
    # Two calendar days (in UTC, the zone asked for): today so far and yesterday hold every value.
    response = await http.get(url, params={"days": 2, "tz": "UTC"}, headers=auth(clinician))
    assert response.status_code == 200, response.text
    body = response.json()

    n = len(values)
    assert body["readings"] == n == 200
    assert body["in_range_pct"] == pytest.approx(70.0)
    assert body["below_3_9_pct"] == pytest.approx(15.0)
    assert body["below_3_0_pct"] == pytest.approx(5.0)
    assert body["above_10_pct"] == pytest.approx(15.0)
    assert body["above_13_9_pct"] == pytest.approx(5.0)
    # The same shares counted independently from the inserted values.
    assert body["in_range_pct"] == pytest.approx(100 * sum(3.9 <= v <= 10.0 for v in values) / n)
    mean = statistics.fmean(values)
    assert body["mean_mmol_l"] == pytest.approx(mean)
    assert body["sd_mmol_l"] == pytest.approx(statistics.stdev(values))
    assert body["cv_pct"] == pytest.approx(100 * statistics.stdev(values) / mean)
    assert body["gmi_pct"] == pytest.approx(3.31 + 0.02392 * mean * MG_DL_PER_MMOL_L)
    start, end = datetime.fromisoformat(body["start"]), datetime.fromisoformat(body["end"])
    assert start == datetime.combine(end.date() - timedelta(days=1), time(0), tzinfo=UTC)
    expected = math.floor((end - start).total_seconds() / 300)
    assert body["interval_s"] == 300 and body["expected_readings"] == expected
    assert body["data_sufficiency_pct"] == pytest.approx(100 * 200 / expected)
    assert body["days_with_data"] == len({t.date() for t in times})

    # Ambulatory glucose profile by half hour of local time.
    zone = "Asia/Kolkata"
    profile = (await http.get(url, params={"days": 2, "tz": zone}, headers=auth(own))).json()
    assert datetime.fromisoformat(profile["start"]) <= min(times)
    slices: dict[int, list[float]] = defaultdict(list)
    for t, v in zip(times, values, strict=True):
        local = t.astimezone(ZoneInfo(zone))
        slices[(local.hour * 60 + local.minute) // 30 * 30].append(v)
    assert [s["minute_of_day"] for s in profile["agp"]] == sorted(slices)
    for got in profile["agp"]:
        ordered = sorted(slices[got["minute_of_day"]])
        assert got["readings"] == len(ordered)
        for q in (5, 25, 50, 75, 95):
            assert got[f"p{q}"] == pytest.approx(_percentile(ordered, q / 100)), (got, q)

    fortnight = (await http.get(url, headers=auth(clinician))).json()
    start, end = datetime.fromisoformat(fortnight["start"]), datetime.fromisoformat(fortnight["end"])
    local_end = end.astimezone(ZoneInfo("Europe/London"))  # the deployment's default zone
    assert start == datetime.combine(local_end.date() - timedelta(days=13), time(0), tzinfo=local_end.tzinfo)
    expected = math.floor((end - start).total_seconds() / 300)
    assert fortnight["expected_readings"] == expected and fortnight["days"] == 14
    assert fortnight["data_sufficiency_pct"] == pytest.approx(100 * 200 / expected)
    assert fortnight["sufficient"] is False and fortnight["readings"] == 200

    # Another team's clinician gets the answer for a patient that does not exist; a
    # researcher may not read patient records at all.
    assert (await http.get(url, headers=auth(outsider))).status_code == 404
    assert (await http.get(url, headers=auth(researcher))).status_code == 403
    for bad in ({"days": 0}, {"days": 91}, {"tz": "Mars/Olympus"}, {"tz": "UTC\x00"}):
        assert (await http.get(url, params=bad, headers=auth(clinician))).status_code == 422


async def test_glucose_summary_without_cgm_data(
    db: psycopg.AsyncConnection[Any], http: httpx.AsyncClient
) -> None:
    patient = await make_patient(db, "team-cgm-empty")
    clinician = await make_user(db, "clinician", ["team-cgm-empty"])
    body = (await http.get(f"/api/v1/patients/{patient}/glucose-summary", headers=auth(clinician))).json()
    assert body["readings"] == 0 and body["in_range_pct"] is None and body["agp"] == []
    assert body["data_sufficiency_pct"] == 0 and body["interval_s"] == 300


# ---- generated traces against an independent implementation of the consensus ----------------
#
# The reference below is written from the consensus definitions (Battelino et al., Diabetes
# Care 2019) in the unit the device reports: whole mg/dL compared with 54/70/180/250, or
# one-decimal mmol/L with 3.0/3.9/10.0/13.9. It shares no code with the service.

BANDS_MG_DL = {
    "very_low": (None, 54),
    "low": (54, 70),
    "target": (70, 181),
    "high": (181, 251),
    "very_high": (251, None),
}
BANDS_TENTHS = {
    "very_low": (None, 30),
    "low": (30, 39),
    "target": (39, 101),
    "high": (101, 140),
    "very_high": (140, None),
}


def _in(value: int, bounds: tuple[int | None, int | None]) -> bool:
    low, high = bounds
    return (low is None or value >= low) and (high is None or value < high)


def reference_summary(
    trace: list[tuple[datetime, int, int]], unit: str, start: datetime, end: datetime, tz: str
) -> dict[str, Any]:
    """trace: (measured_at, seq, device value: whole mg/dL or tenths of mmol/L), one device."""
    first: dict[datetime, tuple[int, int]] = {}
    for at, seq, raw in trace:  # one reading per device and measured time: the lowest seq
        if start <= at < end and (at not in first or seq < first[at][0]):
            first[at] = (seq, raw)
    raws = [raw for _, raw in first.values()]
    n = len(raws)
    bands = BANDS_MG_DL if unit == "mg/dL" else BANDS_TENTHS
    share = {k: 100 * sum(_in(r, b) for r in raws) / n for k, b in bands.items()}
    mmol = [r / MG_DL_PER_MMOL_L if unit == "mg/dL" else r / 10 for r in raws]
    mean = statistics.fmean(mmol)
    sd = statistics.stdev(mmol)
    slots = {math.floor(at.timestamp() / 300) for at in first}
    expected = math.floor((end - start).total_seconds() / 300)
    return {
        "readings": n,
        "time_in_ranges": share,
        "in_range_pct": share["target"],
        "below_3_9_pct": share["low"] + share["very_low"],
        "below_3_0_pct": share["very_low"],
        "above_10_pct": share["high"] + share["very_high"],
        "above_13_9_pct": share["very_high"],
        "mean_mmol_l": mean,
        "sd_mmol_l": sd,
        "cv_pct": 100 * sd / mean,
        "gmi_pct": 3.31 + 0.02392 * mean * MG_DL_PER_MMOL_L,
        "data_sufficiency_pct": 100 * len(slots) / expected,
        "sufficient": 100 * len(slots) / expected >= 70,
        "days_with_data": len({at.astimezone(ZoneInfo(tz)).date() for at in first}),
        "points": sorted((at, value) for at, value in zip(first, mmol, strict=True)),
    }


def generated_trace(
    unit: str, now: datetime, seed: int, keep: float, gap: bool, zone: str
) -> list[tuple[datetime, int, int]]:
    """14 days of 5-minute CGM values (a bounded random walk) with every consensus boundary
    hit, readings sent again under a new seq, a share `keep` of readings present, and with
    `gap` a sensor off for a whole calendar day in `zone`."""
    rng = random.Random(seed)
    step, low, high = (1, 40, 400) if unit == "mg/dL" else (1, 22, 222)
    boundaries = (
        [54, 70, 180, 250, 53, 69, 181, 251] if unit == "mg/dL" else [30, 39, 100, 139, 29, 38, 101, 140]
    )
    value = 120 if unit == "mg/dL" else 67
    local_now = now.astimezone(ZoneInfo(zone))
    day_off = local_now.date() - timedelta(days=5)
    # The newest reading is always kept and falls today in `zone`, even just after midnight,
    # so the expected count of days with data does not depend on the time the suite runs.
    since_midnight = local_now - local_now.replace(hour=0, minute=0, second=0, microsecond=0)
    lead = min(timedelta(minutes=3), since_midnight / 2)
    trace = []
    seq = 0
    for k in range(14 * 288 - 3):
        value = min(high, max(low, value + rng.randint(-6, 6) * step))
        raw = boundaries[k % len(boundaries)] if k % 29 == 0 else value
        at = now - lead - timedelta(minutes=5 * k)
        dropped = rng.random() > keep and k > 0
        if dropped or (gap and at.astimezone(ZoneInfo(zone)).date() == day_off):
            continue
        seq += 1
        trace.append((at, seq, raw))
        if k % 97 == 0:  # a resend under a new sequence number, same measured time
            seq += 1
            trace.append((at, seq, raw))
    return trace


@pytest.mark.parametrize(
    ("unit", "keep", "gap", "zone"),
    [("mg/dL", 0.97, True, "America/New_York"), ("mmol/L", 0.55, False, "Asia/Kolkata")],
)
async def test_summary_matches_the_consensus_on_generated_traces(
    db: psycopg.AsyncConnection[Any], http: httpx.AsyncClient, unit: str, keep: float, gap: bool, zone: str
) -> None:
    patient = await make_patient(db, "team-cgm-trace")
    cgm = await make_device(db, patient, "cgm")
    clinician = await make_user(db, "clinician", ["team-cgm-trace"])
    set_zone = await http.put(
        f"/api/v1/patients/{patient}/time-zone", json={"time_zone": zone}, headers=auth(clinician)
    )
    assert set_zone.status_code == 200, set_zone.text

    now = datetime.now(UTC)
    trace = generated_trace(unit, now, seed=len(unit), keep=keep, gap=gap, zone=zone)
    spec = CODES["glucose"]
    rows = [
        (
            patient,
            at,
            spec.to_canonical(raw, "mg/dL") if unit == "mg/dL" else raw / 10,
            "cgm",
            cgm.device_id,
            seq,
            at,
            [],
        )
        for at, seq, raw in trace
    ]
    async with db.cursor() as cur:
        await cur.executemany(_INSERT, rows)

    url = f"/api/v1/patients/{patient}/glucose-summary"
    body = (await http.get(url, headers=auth(clinician))).json()
    start, end = datetime.fromisoformat(body["start"]), datetime.fromisoformat(body["end"])
    want = reference_summary(trace, unit, start, end, zone)
    assert body["timezone"] == zone and body["days"] == 14
    assert body["readings"] == want["readings"]
    for key in (
        "in_range_pct",
        "below_3_9_pct",
        "below_3_0_pct",
        "above_10_pct",
        "above_13_9_pct",
        "mean_mmol_l",
        "sd_mmol_l",
        "cv_pct",
        "gmi_pct",
        "data_sufficiency_pct",
    ):
        assert body[key] == pytest.approx(want[key], rel=1e-9, abs=1e-9), key
    assert body["time_in_ranges"] == pytest.approx(want["time_in_ranges"], rel=1e-9, abs=1e-9)
    assert sum(body["time_in_ranges"].values()) == pytest.approx(100)
    assert body["sufficient"] is want["sufficient"] is (keep > 0.7)
    assert body["days_with_data"] == want["days_with_data"] == (13 if gap else 14)
    assert body["mean_mg_dl"] == pytest.approx(want["mean_mmol_l"] * MG_DL_PER_MMOL_L)

    # AGP by half hour of the patient's day.
    slices: dict[int, list[float]] = defaultdict(list)
    for at, value in want["points"]:
        local = at.astimezone(ZoneInfo(zone))
        slices[(local.hour * 60 + local.minute) // 30 * 30].append(value)
    assert [s["minute_of_day"] for s in body["agp"]] == sorted(slices)
    for got in body["agp"]:
        ordered = sorted(slices[got["minute_of_day"]])
        assert got["readings"] == len(ordered)
        for q in (5, 25, 50, 75, 95):
            assert got[f"p{q}"] == pytest.approx(_percentile(ordered, q / 100)), (got, q)

    # Daily profiles: the last 14 calendar days in the patient's zone, each its own readings.
    days = (await http.get(f"/api/v1/patients/{patient}/glucose-days", headers=auth(clinician))).json()
    assert days["timezone"] == zone and len(days["days"]) == 14
    today = datetime.now(ZoneInfo(zone)).date()
    assert [d["date"] for d in days["days"]] == [str(today - timedelta(days=n)) for n in range(13, -1, -1)]
    first_midnight = datetime.combine(today - timedelta(days=13), time(0), tzinfo=ZoneInfo(zone))
    by_day: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    for at, value in reference_summary(trace, unit, first_midnight, now + timedelta(minutes=1), zone)[
        "points"
    ]:
        by_day[str(at.astimezone(ZoneInfo(zone)).date())].append((at, value))
    bands = BANDS_MG_DL if unit == "mg/dL" else BANDS_TENTHS
    for day in days["days"]:
        own = by_day.get(day["date"], [])
        assert day["readings"] == len(own) == len(day["points"])
        assert [p["value"] for p in day["points"]] == pytest.approx([v for _, v in own])
        for p, (at, _) in zip(day["points"], own, strict=True):
            local = at.astimezone(ZoneInfo(zone))
            assert p["minute_of_day"] == pytest.approx(
                local.hour * 60 + local.minute + (local.second + local.microsecond / 1e6) / 60
            )
        if own:
            raws = [round(v * MG_DL_PER_MMOL_L) if unit == "mg/dL" else round(v * 10) for _, v in own]
            assert day["in_range_pct"] == pytest.approx(
                100 * sum(_in(r, bands["target"]) for r in raws) / len(raws)
            )
        else:
            assert day["in_range_pct"] is None


async def test_summary_counts_boundary_readings_of_mg_dl_sources_in_their_consensus_band(
    db: psycopg.AsyncConnection[Any], http: httpx.AsyncClient
) -> None:
    """The issue's case: a CGM's 70 and 54 mg/dL, stored as 3.8855 and 2.9974 mmol/L."""
    patient = await make_patient(db, "team-cgm-edges")
    cgm = await make_device(db, patient, "cgm")
    clinician = await make_user(db, "clinician", ["team-cgm-edges"])
    now = datetime.now(UTC)
    spec = CODES["glucose"]
    values = [70, 54, 180, 250]
    rows = [
        (
            patient,
            now - timedelta(minutes=5 * k + 1),
            spec.to_canonical(v, "mg/dL"),
            "cgm",
            cgm.device_id,
            k,
            now,
            [],
        )
        for k, v in enumerate(values)
    ]
    # the first reading again under a new sequence number: still one reading
    rows.append((patient, rows[0][1], rows[0][2], "cgm", cgm.device_id, 99, now, []))
    async with db.cursor() as cur:
        await cur.executemany(_INSERT, rows)
    body = (
        await http.get(
            f"/api/v1/patients/{patient}/glucose-summary", params={"days": 2}, headers=auth(clinician)
        )
    ).json()
    assert body["readings"] == 4
    assert body["time_in_ranges"] == {"very_low": 0, "low": 25, "target": 50, "high": 25, "very_high": 0}
    assert body["below_3_0_pct"] == 0 and body["below_3_9_pct"] == 25 and body["above_13_9_pct"] == 0
