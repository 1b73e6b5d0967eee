"""Nightscout uploaders as an admin provisions them, and the requests' shared parts."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import httpx
import psycopg

from telehealth.nightscout import api_secret_header
from tests.factories import auth, make_user

_ids = itertools.count(1)
FIVE_MIN_MS = 300_000
DIRECTIONS = ["Flat", "FortyFiveUp", "SingleUp", "FortyFiveDown", "SingleDown"]


def xdrip_day(end_ms: int, count: int = 288) -> list[dict[str, Any]]:
    """A day of 5-minute xDrip+ entries, newest first as xDrip+ sends them."""
    entries = []
    for i in range(count):
        date = end_ms - i * FIVE_MIN_MS
        sgv = round(140 + 70 * math.sin(i / 20))
        when = datetime.fromtimestamp(date / 1000, UTC).isoformat(timespec="milliseconds")
        entries.append(
            {
                "device": "xDrip-DexcomG6",
                "date": date,
                "dateString": when.replace("+00:00", "Z"),
                "sgv": sgv,
                "delta": 1.5,
                "direction": DIRECTIONS[i % len(DIRECTIONS)],
                "type": "sgv",
                "filtered": sgv * 1000,
                "unfiltered": sgv * 1000,
                "rssi": 100,
                "noise": 1,
                "sysTime": when.replace("+00:00", "Z"),
            }
        )
    return entries


async def provision_uploader(
    http: httpx.AsyncClient, db: psycopg.AsyncConnection[Any], patient: UUID
) -> dict[str, Any]:
    """Through the devices API, as an admin would: the credentials are shown once."""
    admin = await make_user(db, "admin")
    device_id = f"ns-up-{next(_ids)}-{datetime.now().timestamp():.0f}"
    response = await http.post(
        "/api/v1/devices",
        json={"device_id": device_id, "patient_id": str(patient), "kind": "uploader"},
        headers=auth(admin),
    )
    assert response.status_code == 201, response.text
    creds: dict[str, Any] = response.json()
    assert creds["api_secret_sha1"] == api_secret_header(creds["api_secret"])
    creds["admin"] = admin
    return creds


def secret(creds: dict[str, Any]) -> dict[str, str]:
    return {"API-SECRET": creds["api_secret_sha1"]}


async def scalar(db: psycopg.AsyncConnection[Any], sql: str, *args: Any) -> Any:
    cur = await db.execute(sql, args)
    row = await cur.fetchone()
    assert row is not None
    return next(iter(row.values()))


def now_ms() -> int:
    return round(datetime.now(UTC).timestamp() * 1000)
