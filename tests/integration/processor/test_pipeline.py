"""Device -> MQTT -> gateway -> Kafka -> processor -> PostgreSQL -> API, on real servers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from launcher.stack import Services
from simulators.publisher import Publisher
from telehealth.settings import Settings
from telehealth.topics import readings_topic
from tests.conftest import eventually
from tests.factories import auth, make_device, make_patient, make_user
from tests.stream import count


def glucose(value: float, unit: str = "mmol/L") -> list[dict[str, Any]]:
    return [{"code": "glucose", "value": value, "unit": unit, "source": "cgm"}]


async def test_falling_glucose_is_stored_once_and_raises_urgent_low(
    db: psycopg.AsyncConnection[Any], http: httpx.AsyncClient, device_publisher: Publisher
) -> None:
    patient = await make_patient(db, "team-e2e")
    device = await make_device(db, patient, "cgm")
    clinician = await make_user(db, "clinician", ["team-e2e"])
    start = datetime.now(UTC) - timedelta(minutes=9, seconds=30)
    series = [6.0, 5.6, 5.2, 4.8, 4.4, 4.0, 3.6, 3.2, 2.8, 2.4]  # 1-minute CGM, -0.4 mmol/L/min
    for seq, value in enumerate(series, start=1):
        device_publisher.publish_reading(
            device.device_id, seq, glucose(value), measured_at=start + timedelta(minutes=seq - 1)
        )
    device_publisher.publish_reading(
        device.device_id, 6, glucose(4.0), measured_at=start + timedelta(minutes=5)
    )  # redelivered
    device_publisher.publish_reading(device.device_id, 11, glucose(43, "mg/dL"))
    assert await device_publisher.drain()

    async def stored() -> int:
        return await count(db, "SELECT count(*) FROM reading_receipts WHERE device_id = %s", device.device_id)

    await eventually(lambda: _equals(stored, 11))
    assert await count(db, "SELECT count(*) FROM readings WHERE device_id = %s", device.device_id) == 11
    cur = await db.execute(
        "SELECT value, unit FROM readings WHERE device_id = %s AND seq = 11", (device.device_id,)
    )
    assert await cur.fetchone() == {"value": pytest.approx(2.3868, abs=1e-3), "unit": "mmol/L"}

    async def alerts() -> list[dict[str, Any]]:
        response = await http.get(
            "/api/v1/alerts", params={"patient_id": str(patient)}, headers=auth(clinician)
        )
        assert response.status_code == 200, response.text
        return [a for a in response.json() if a["severity"] == "urgent"]

    [alert] = await eventually(alerts)
    assert alert["rule"] == "glucose_low" and alert["status"] == "open"
    assert alert["value"] <= 3.0 and "urgent low" in alert["message"].lower()
    cur = await db.execute("SELECT rule FROM alerts WHERE patient_id = %s", (patient,))
    assert [r["rule"] for r in await cur.fetchall()] == ["glucose_low"], "one episode, one alert"
    cur = await db.execute(
        "SELECT e.severity, e.note FROM alert_events e JOIN alerts a ON a.id = e.alert_id"
        " WHERE a.patient_id = %s ORDER BY e.id",
        (patient,),
    )
    events = await cur.fetchall()
    # the forecast saw it coming: opened as "urgent low soon" (at 4.4 mmol/L, falling), then
    # escalated in place when a reading went below 3.0
    assert events[0]["note"].startswith("opened: Glucose urgent low soon: 4.4 mmol/L now"), events
    assert events[-1]["note"].startswith("Glucose urgent low: 2.8 mmol/L"), events


async def _equals(check: Any, expected: int) -> bool:
    return bool(await check() == expected)


@pytest.mark.parametrize(
    ("payload", "topic_device", "reason"),
    [
        (b"{not json", None, "unparseable"),
        (b'{"device_id": "X", "seq": 1}', None, "schema_invalid"),
        (None, "other", "device_mismatch"),
        (None, "unknown-device", "unknown_device"),
    ],
)
async def test_bad_messages_become_dead_letters_with_reason_and_raw_bytes(
    db: psycopg.AsyncConnection[Any],
    device_publisher: Publisher,
    payload: bytes | None,
    topic_device: str | None,
    reason: str,
) -> None:
    patient = await make_patient(db, "team-dl")
    device = await make_device(db, patient, "oximeter")
    other = await make_device(db, patient, "oximeter")
    if payload is None:
        payload = (
            b'{"device_id":"%s","seq":1,"measured_at":"2026-11-23T08:00:00Z",'
            b'"observations":[{"code":"spo2","value":97,"unit":"%%"}]}' % device.device_id.encode()
        )
    publish_as = {None: device.device_id, "other": other.device_id}.get(topic_device, topic_device)
    assert publish_as is not None
    device_publisher.publish_raw(readings_topic(publish_as), payload)

    async def letters() -> list[dict[str, Any]]:
        cur = await db.execute(
            "SELECT reason, detail, raw, device_id FROM dead_letters WHERE device_id = %s", (publish_as,)
        )
        return await cur.fetchall()

    [letter] = await eventually(letters)
    assert letter["reason"] == reason and letter["detail"]
    if reason != "device_mismatch":
        assert bytes(letter["raw"]) == payload
    assert (
        await count(
            db,
            "SELECT count(*) FROM reading_receipts WHERE device_id = ANY(%s)",
            [device.device_id, other.device_id],
        )
        == 0
    )


async def test_late_backlog_is_stored_flagged_and_raises_no_alert(
    db: psycopg.AsyncConnection[Any], device_publisher: Publisher
) -> None:
    patient = await make_patient(db, "team-late")
    device = await make_device(db, patient, "cgm")
    old = datetime.now(UTC) - timedelta(hours=2)
    backlog = [
        {
            "device_id": device.device_id,
            "seq": i,
            "measured_at": (old + timedelta(minutes=5 * i)).isoformat(),
            "observations": glucose(2.2),
        }
        for i in range(1, 13)
    ]
    device_publisher.publish_raw(readings_topic(device.device_id), json.dumps(backlog).encode())

    async def flagged() -> int:
        return await count(
            db,
            "SELECT count(*) FROM readings WHERE device_id = %s AND 'late' = ANY(quality)",
            device.device_id,
        )

    await eventually(lambda: _equals(flagged, 12))
    assert await count(db, "SELECT count(*) FROM alerts WHERE patient_id = %s", patient) == 0


async def test_every_stored_field_keeps_its_value_and_type(
    db: psycopg.AsyncConnection[Any], device_publisher: Publisher
) -> None:
    """The processor writes with binary COPY, which does not cast: what a device sent (context
    JSON, battery level, quality flags) must come back as sent, not as a string of it."""
    patient = await make_patient(db, "team-roundtrip")
    device = await make_device(db, patient, "oximeter")
    measured = datetime.now(UTC).replace(microsecond=123456) - timedelta(hours=1)
    reading = {
        "device_id": device.device_id,
        "seq": 2**40,
        "measured_at": measured.isoformat(),
        "battery_pct": 55,
        "context": {"perfusion_index": 3.5, "motion": False, "note": "ünïcode"},
        "observations": [
            {"code": "spo2", "value": 97, "unit": "%"},
            {"code": "pulse", "value": 61.5, "unit": "bpm"},
        ],
    }
    device_publisher.publish_raw(readings_topic(device.device_id), json.dumps(reading).encode())
    assert await device_publisher.drain()

    async def receipt() -> dict[str, Any] | None:
        cur = await db.execute(
            """SELECT seq, patient_id, measured_at, battery_pct, context, jsonb_typeof(context) AS kind
               FROM reading_receipts WHERE device_id = %s""",
            (device.device_id,),
        )
        return await cur.fetchone()

    assert await eventually(receipt) == {
        "seq": 2**40,
        "patient_id": patient,
        "measured_at": measured,
        "battery_pct": 55,
        "context": reading["context"],
        "kind": "object",
    }
    cur = await db.execute(
        """SELECT code, value, unit, source, quality FROM readings WHERE device_id = %s ORDER BY code""",
        (device.device_id,),
    )
    assert await cur.fetchall() == [
        {"code": "pulse", "value": 61.5, "unit": "/min", "source": None, "quality": ["late"]},
        {"code": "spo2", "value": 97.0, "unit": "%", "source": None, "quality": ["late"]},
    ]


async def test_status_updates_device_state(
    db: psycopg.AsyncConnection[Any], device_publisher: Publisher
) -> None:
    patient = await make_patient(db, "team-status")
    device = await make_device(db, patient, "oximeter")
    device_publisher.publish_status(device.device_id, "offline", 12)

    async def state() -> dict[str, Any] | None:
        cur = await db.execute(
            "SELECT state, battery_pct FROM devices WHERE id = %s AND state IS NOT NULL", (device.device_id,)
        )
        return await cur.fetchone()

    assert await eventually(state) == {"state": "offline", "battery_pct": 12}


async def test_alert_resolves_itself_once_back_in_range(
    db: psycopg.AsyncConnection[Any], device_publisher: Publisher
) -> None:
    patient = await make_patient(db, "team-resolve")
    device = await make_device(db, patient, "oximeter")
    start = datetime.now(UTC) - timedelta(minutes=5)
    for seq, spo2 in enumerate([97, 92, 92, 93, 94, 96], start=1):
        device_publisher.publish_reading(
            device.device_id,
            seq,
            [{"code": "spo2", "value": spo2, "unit": "%"}],
            measured_at=start + timedelta(minutes=seq - 1),
        )

    async def resolved() -> dict[str, Any] | None:
        cur = await db.execute(
            "SELECT severity, resolution, resolved_by, value FROM alerts"
            " WHERE patient_id = %s AND status = 'resolved'",
            (patient,),
        )
        return await cur.fetchone()

    assert await eventually(resolved) == {
        "severity": "warning",
        "resolution": "auto",
        "resolved_by": "processor",
        "value": 92,
    }
    cur = await db.execute(
        "SELECT e.status FROM alert_events e JOIN alerts a ON a.id = e.alert_id"
        " WHERE a.patient_id = %s ORDER BY e.id",
        (patient,),
    )
    assert [r["status"] for r in await cur.fetchall()] == ["open", "resolved"]


async def test_unacknowledged_urgent_alert_escalates_after_five_minutes(
    db: psycopg.AsyncConnection[Any], http: httpx.AsyncClient, services: Services
) -> None:
    patient = await make_patient(db, "team-escalate")
    clinician = await make_user(db, "clinician", ["team-escalate"])
    cur = await db.execute(
        """INSERT INTO alerts (patient_id, rule, severity, message, triggered_at, opened_at) VALUES
           (%s, 'spo2_low', 'urgent', 'SpO2 urgent low', now() - interval '6 min', now() - interval '6 min'),
           (%s, 'pulse', 'urgent', 'Pulse urgent', now() - interval '4 min', now() - interval '4 min')
           RETURNING id""",
        (patient, patient),
    )
    overdue, recent = [r["id"] for r in await cur.fetchall()]

    async def escalated() -> list[dict[str, Any]]:
        response = await http.get(
            "/api/v1/alerts", params={"patient_id": str(patient)}, headers=auth(clinician)
        )
        return [a for a in response.json() if a["escalated_at"]]

    [alert] = await eventually(escalated, timeout=20)
    assert alert["id"] == overdue
    inbox = (
        await http.get("/api/v1/alerts", params={"patient_id": str(patient)}, headers=auth(clinician))
    ).json()
    assert [a["id"] for a in inbox] == [overdue, recent]  # escalated first
    ack = await http.post(f"/api/v1/alerts/{overdue}/acknowledge", json={}, headers=auth(clinician))
    assert 359 < ack.json()["time_to_acknowledge_s"] < 420


async def test_device_offline_and_stale_data_alerts(
    db: psycopg.AsyncConnection[Any], device_publisher: Publisher
) -> None:
    patient = await make_patient(db, "team-device")
    oximeter = await make_device(db, patient, "oximeter")  # expected every 60 s
    await db.execute(
        "UPDATE devices SET provisioned_at = now() - interval '4 min' WHERE id = %s", (oximeter.device_id,)
    )

    async def alert(rule: str, status: str) -> dict[str, Any] | None:
        cur = await db.execute(
            "SELECT severity, message FROM alerts WHERE patient_id = %s AND rule = %s AND status = %s",
            (patient, rule, status),
        )
        return await cur.fetchone()

    stale = await eventually(lambda: alert("stale_data", "open"), timeout=30)
    assert stale["severity"] == "warning" and oximeter.device_id in stale["message"]
    device_publisher.publish_reading(
        oximeter.device_id, 1, [{"code": "spo2", "value": 97, "unit": "%"}], measured_at=datetime.now(UTC)
    )
    await eventually(lambda: alert("stale_data", "resolved"), timeout=30)

    device_publisher.publish_status(oximeter.device_id, "offline", 9)
    assert (await eventually(lambda: alert("device_offline", "open")))["severity"] == "warning"
    assert "9 %" in (await eventually(lambda: alert("battery_low", "open")))["message"]
    device_publisher.publish_status(oximeter.device_id, "online", 80)
    await eventually(lambda: alert("device_offline", "resolved"))
    await eventually(lambda: alert("battery_low", "resolved"))


async def test_alerts_and_their_transitions_reach_the_alerts_topic(
    db: psycopg.AsyncConnection[Any], device_publisher: Publisher, settings: Settings
) -> None:
    import json

    from aiokafka import AIOKafkaConsumer

    patient = await make_patient(db, "team-topic")
    device = await make_device(db, patient, "oximeter")
    consumer = AIOKafkaConsumer(
        settings.alerts_topic,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=f"test-{patient}",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    seen: list[dict[str, Any]] = []

    async def read_until(status: str) -> None:
        async def arrived() -> bool:
            batch = await consumer.getmany(timeout_ms=500)  # waits up to 0.5 s for records
            seen.extend(
                m
                for r in batch.values()
                for m in (json.loads(x.value) for x in r)
                if m["patient_id"] == str(patient)
            )
            return [m["status"] for m in seen][-1:] == [status]

        await eventually(arrived, timeout=30, interval=0)

    try:
        now = datetime.now(UTC)
        for seq, (spo2, status) in enumerate([(90, "open"), (97, "resolved")], start=1):
            device_publisher.publish_reading(
                device.device_id,
                seq,
                [{"code": "spo2", "value": spo2, "unit": "%"}],
                measured_at=now + timedelta(seconds=seq),
            )
            # The resolving reading goes out only once the open state is on the topic, so
            # the two land in different batches and both states are published.
            await read_until(status)
    finally:
        await consumer.stop()
    assert [(m["rule"], m["severity"], m["status"]) for m in seen] == [
        ("spo2_low", "urgent", "open"),
        ("spo2_low", "urgent", "resolved"),
    ]
