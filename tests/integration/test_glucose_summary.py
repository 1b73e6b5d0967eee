"""The consensus CGM summary against an independent computation on a designed series."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest

from telehealth.codes import MG_DL_PER_MMOL_L
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
    rows = [
        (patient, t, v, "cgm", cgm.device_id, k, t, ["late"] if k == 5 else [])
        for k, (t, v) in enumerate(zip(times, values, strict=True))
    ]
    # Left out: a finger-prick value, an implausible one, and one older than the window.
    rows.append((patient, now - timedelta(minutes=7), 2.0, "smbg", meter.device_id, 1, now, []))
    rows.append((patient, now - timedelta(minutes=9), 45.0, "cgm", cgm.device_id, 900, now, ["implausible"]))
    rows.append((patient, now - timedelta(days=15), 2.0, "cgm", cgm.device_id, 901, now, []))
    async with db.cursor() as cur:
        await cur.executemany(_INSERT, rows)

    url = f"/api/v1/patients/{patient}/glucose-summary"
    response = await http.get(url, params={"days": 1}, headers=auth(clinician))
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
    assert body["interval_s"] == 300 and body["expected_readings"] == 288
    assert body["data_sufficiency_pct"] == pytest.approx(100 * 200 / 288)

    # Ambulatory glucose profile by half hour of local time.
    zone = "Asia/Kolkata"
    profile = (await http.get(url, params={"days": 1, "tz": zone}, headers=auth(own))).json()
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
    assert fortnight["expected_readings"] == 14 * 288
    assert fortnight["data_sufficiency_pct"] == pytest.approx(100 * 200 / (14 * 288))

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
