"""One boundary for every path: the same hostile values sent by an MQTT device and by a
Nightscout uploader become dead letters with the same reasons, through the real broker,
gateway, API, Kafka, processor and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg

from simulators.publisher import Publisher
from telehealth.contracts import wire_time
from telehealth.topics import readings_topic
from tests.conftest import eventually
from tests.factories import make_device, make_patient
from tests.nightscout_support import now_ms, provision_uploader, secret

#: name -> (the value in an MQTT reading's context / in a Nightscout entry's field, or a time)
HOSTILE: dict[str, Any] = {
    "nul": "a\u0000b",
    "lone surrogate": "\ud800",
    "long string": "x" * 600,
    "deep nesting": {"a": {"b": {"c": {"d": 1}}}},
    "oversized": ["y" * 500] * 140,
}
TIMES = {"before 2000": datetime(1999, 12, 31, tzinfo=UTC), "two days ahead": None}


async def reasons(db: psycopg.AsyncConnection[Any], device_id: str, expected: int) -> list[str] | None:
    cur = await db.execute("SELECT reason FROM dead_letters WHERE device_id = %s ORDER BY id", (device_id,))
    rows = [r["reason"] for r in await cur.fetchall()]
    return rows if len(rows) == expected else None


async def test_mqtt_and_nightscout_refuse_the_same_values_for_the_same_reasons(
    http: httpx.AsyncClient, db: psycopg.AsyncConnection[Any], publisher: Publisher
) -> None:
    patient = await make_patient(db, "team-boundary")
    device = await make_device(db, patient, "cgm")
    creds = await provision_uploader(http, db, patient)
    now = datetime.now(UTC)
    times = {name: at or now + timedelta(days=2) for name, at in TIMES.items()}
    glucose = [{"code": "glucose", "value": 142, "unit": "mg/dL", "source": "cgm"}]

    # the MQTT device: one message per hostile value, in order
    for seq, value in enumerate(HOSTILE.values(), start=1):
        reading = {
            "device_id": device.device_id,
            "seq": seq,
            "measured_at": wire_time(now),
            "observations": glucose,
        }
        publisher.publish_raw(
            readings_topic(device.device_id), json.dumps(reading | {"context": {"note": value}}).encode()
        )
    for seq, at in enumerate(times.values(), start=100):
        reading = {
            "device_id": device.device_id,
            "seq": seq,
            "measured_at": wire_time(at),
            "observations": glucose,
        }
        publisher.publish_raw(readings_topic(device.device_id), json.dumps(reading).encode())
    assert await publisher.drain(30)

    # the Nightscout uploader: the same values in an entry field it does not map, one upload
    t = now_ms()
    entries = [
        {"type": "sgv", "sgv": 142, "date": t - i * 1000, "device": "xDrip", "note": value}
        for i, value in enumerate(HOSTILE.values())
    ]
    entries += [{"type": "sgv", "sgv": 142, "date": round(at.timestamp() * 1000)} for at in times.values()]
    body = json.dumps(entries)  # keeps the lone surrogate as \ud800
    posted = await http.post(
        "/api/v1/entries", content=body, headers={**secret(creds), "Content-Type": "application/json"}
    )
    assert posted.status_code == 200, posted.text
    total = len(HOSTILE) + len(TIMES)
    answered = [a.get("dead_letter") for a in posted.json()]

    mqtt = await eventually(lambda: reasons(db, device.device_id, total))
    nightscout = await eventually(lambda: reasons(db, creds["device_id"], total))
    assert nightscout == answered == mqtt
    assert mqtt == [
        "unstorable_text",
        "unstorable_text",
        "context_too_large",
        "context_too_large",
        "oversized",
        "time_out_of_window",
        "time_out_of_window",
    ]
