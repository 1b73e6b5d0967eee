"""A patient at a glance: the newest glucose with its change and trend, the newest SpO2 and
pulse (with the newest credible value beside a flagged one), and the CGM forecast.

- **Delta**: the newest glucose minus the reading before it from the same device, when that
  one is at most 15 minutes older (as CGM apps show it).
- **Trend**: the rate of change the processor's filter stored with the newest CGM reading
  (`glucose_trends`); without one, the least-squares slope of the device's readings of the last
  15 minutes (at least 3 readings over at least 10 minutes). Arrows: `telehealth.glucose_ranges`.
- **Forecast**: the processor's filtered level and rate of the newest CGM reading projected to
  the patient's predicted-low horizon (`telehealth.glucose_forecast`), while that reading is at
  most 15 minutes old; none without a stored trend.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from telehealth.glucose_forecast import forecast_points
from telehealth.glucose_ranges import trend_of
from telehealth.thresholds import Thresholds

CODES = ("glucose", "spo2", "pulse")
LEVEL_CODE = "glucose_level"
ROC_CODE = "glucose_roc"
#: flags that make a value unfit to show as the patient's current state
UNFIT = ("implausible", "artefact", "future")
RECENT = timedelta(minutes=15)
SLOPE_MIN_READINGS = 3
SLOPE_MIN_SPAN = timedelta(minutes=10)

_SERVED = "measured_at >= TIMESTAMPTZ '2000-01-01 00:00Z' AND measured_at < now() + INTERVAL '1 day'"
_COLUMNS = "measured_at, value, unit, quality, source, device_id, seq"

_LATEST = f"""
SELECT c.code, to_jsonb(l) AS latest, to_jsonb(ok) AS credible
FROM unnest(%(codes)s::text[]) AS c(code)
LEFT JOIN LATERAL (
    SELECT {_COLUMNS} FROM readings
    WHERE patient_id = %(patient)s AND code = c.code AND {_SERVED}
    ORDER BY measured_at DESC, seq DESC LIMIT 1) l ON true
LEFT JOIN LATERAL (
    SELECT {_COLUMNS} FROM readings
    WHERE patient_id = %(patient)s AND code = c.code AND {_SERVED}
      AND NOT (quality && %(unfit)s::text[])
    ORDER BY measured_at DESC, seq DESC LIMIT 1) ok ON true
"""

_RECENT_OF_DEVICE = """
SELECT DISTINCT ON (measured_at) measured_at, value FROM readings
WHERE patient_id = %(patient)s AND device_id = %(device)s AND code = 'glucose'
  AND measured_at >= %(since)s AND measured_at <= %(until)s
  AND NOT (quality && %(unfit)s::text[])
ORDER BY measured_at, seq
"""

_TREND = """
SELECT level AS glucose_level, rate_per_min AS glucose_roc FROM glucose_trends
WHERE device_id = %(device)s AND seq = %(seq)s AND patient_id = %(patient)s
"""

_HORIZON = """
SELECT settings FROM patient_thresholds WHERE patient_id = %(patient)s ORDER BY version DESC LIMIT 1
"""


def _reading(raw: dict[str, Any] | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    return {**raw, "measured_at": datetime.fromisoformat(raw["measured_at"])}


def slope_per_min(points: list[tuple[datetime, float]]) -> float | None:
    """Least-squares slope (per minute) of (time, value) points, or None with too few."""
    if len(points) < SLOPE_MIN_READINGS or points[-1][0] - points[0][0] < SLOPE_MIN_SPAN:
        return None
    t0 = points[0][0]
    xs = [(t - t0).total_seconds() / 60 for t, _ in points]
    ys = [v for _, v in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


async def patient_now(conn: psycopg.AsyncConnection[Any], patient_id: UUID, now: datetime) -> dict[str, Any]:
    params: dict[str, Any] = {"patient": patient_id, "codes": list(CODES), "unfit": list(UNFIT)}
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_LATEST, params)
        rows = {r["code"]: r for r in await cur.fetchall()}
    out: dict[str, Any] = {}
    for code in CODES:
        latest, credible = _reading(rows[code]["latest"]), _reading(rows[code]["credible"])
        out[code] = (
            None
            if latest is None
            else {
                **latest,
                # a flagged newest value is shown beside the newest credible one, never instead of it
                "credible": None if credible is None or credible == latest else credible,
            }
        )
    out["glucose_trend"] = None
    out["forecast"] = None
    glucose = out["glucose"]
    current = (glucose["credible"] or glucose) if glucose else None
    if current is None or any(q in UNFIT for q in current["quality"]):
        return out
    await _glucose_context(conn, patient_id, current, now, out)
    return out


async def _glucose_context(
    conn: psycopg.AsyncConnection[Any],
    patient_id: UUID,
    current: dict[str, Any],
    now: datetime,
    out: dict[str, Any],
) -> None:
    at: datetime = current["measured_at"]
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            _RECENT_OF_DEVICE,
            {
                "patient": patient_id,
                "device": current["device_id"],
                "since": at - RECENT,
                "until": at,
                "unfit": list(UNFIT),
            },
        )
        recent = [(r["measured_at"], r["value"]) for r in await cur.fetchall()]
        await cur.execute(
            _TREND, {"patient": patient_id, "device": current["device_id"], "seq": current["seq"]}
        )
        trend = dict(await cur.fetchone() or {})
        await cur.execute(_HORIZON, {"patient": patient_id})
        row = await cur.fetchone()
    before = [p for p in recent if p[0] < at]
    context: dict[str, Any] = {
        "delta": None,
        "delta_minutes": None,
        "rate_per_min": None,
        "rate_source": None,
        "trend": None,
    }
    if before:
        prev_at, prev = before[-1]
        context["delta"] = current["value"] - prev
        context["delta_minutes"] = (at - prev_at).total_seconds() / 60
    cgm = current["source"] == "cgm"
    rate = trend.get(ROC_CODE) if cgm else None
    if rate is not None:
        context["rate_source"] = "filter"
    elif cgm and (rate := slope_per_min(recent)) is not None:
        context["rate_source"] = "slope"
    if rate is not None:
        context["rate_per_min"] = rate
        context["trend"] = trend_of(rate).value
    out["glucose_trend"] = context
    level = trend.get(LEVEL_CODE)
    if cgm and level is not None and trend.get(ROC_CODE) is not None and now - at <= RECENT:
        thresholds = Thresholds.model_validate(row["settings"]) if row else Thresholds()
        horizon = thresholds.glucose_predicted_minutes
        out["forecast"] = {
            "from": at,
            "level": level,
            "rate_per_min": trend[ROC_CODE],
            "horizon_min": horizon,
            "predicted_low_line": thresholds.predicted_low_line,
            "points": [
                {"at": at + timedelta(minutes=m), "minutes": m, "value": v}
                for m, v in forecast_points(level, trend[ROC_CODE], horizon)
            ],
        }
