"""The live alert stream: pushed from the real pipeline, resumable, limited to the care team."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import httpx
import psycopg

from dashboard_api.live import APPLICATION_NAME
from simulators.publisher import Publisher
from telehealth.security import token_digest
from telehealth.settings import Settings
from tests.conftest import eventually
from tests.factories import auth, make_device, make_patient, make_user
from tests.sse import Listener, Message, listen


async def _publish_glucose(settings: Settings, device_id: str, seq: int, value: float) -> None:
    assert settings.mqtt_url
    publisher = Publisher(settings.mqtt_relay_url(), client_id=f"sse-{device_id}-{seq}")
    await publisher.connect()
    publisher.publish_reading(
        device_id, seq, [{"code": "glucose", "value": value, "unit": "mmol/L"}], measured_at=datetime.now(UTC)
    )
    await publisher.drain()
    await publisher.close()


def _of(listener: Listener, patient: UUID) -> list[Message]:
    return [m for m in listener.events() if m.json()["alert"]["patient_id"] == str(patient)]


async def test_stream_pushes_resumes_and_keeps_to_the_care_team(
    db: psycopg.AsyncConnection[Any], http: httpx.AsyncClient, settings: Settings
) -> None:
    patient = await make_patient(db, "team-sse")
    device = await make_device(db, patient, "glucometer")
    clinician = await make_user(db, "clinician", ["team-sse"])
    other_patient = await make_patient(db, "team-sse-other")
    other_device = await make_device(db, other_patient, "glucometer")
    outsider = await make_user(db, "clinician", ["team-sse-other"])

    revoked = await make_user(db, "clinician", ["team-sse"])
    mine, theirs, doomed = listen(http, clinician), listen(http, outsider), listen(http, revoked)
    try:
        await eventually(lambda: _async(mine.events("snapshot") and theirs.events("snapshot")))
        assert mine.status == 200 and mine.events("snapshot")[0].json() == {"alerts": []}

        # A reading that opens an alert arrives on the stream as an `open` event.
        await _publish_glucose(settings, device.device_id, 1, 2.6)
        opened = (await eventually(lambda: _async(_of(mine, patient))))[0]
        body = opened.json()
        assert body["event"]["status"] == "open" and body["event"]["actor"] == "processor"
        assert body["alert"]["rule"] == "glucose_low" and body["alert"]["severity"] == "urgent"
        assert opened.id == str(body["pos"])
        alert_id = body["alert"]["id"]
        await mine.stop()

        # While disconnected: acknowledged, then resolved by hand (a low episode resolves itself
        # only after 15 minutes back in range, docs/alerts.md).
        ack = await http.post(
            f"/api/v1/alerts/{alert_id}/acknowledge", json={"note": "calling"}, headers=auth(clinician)
        )
        assert ack.status_code == 200
        done = await http.post(
            f"/api/v1/alerts/{alert_id}/resolve", json={"note": "treated, 6.0 now"}, headers=auth(clinician)
        )
        assert done.status_code == 200, done.text

        async def resolved() -> bool:
            cur = await db.execute("SELECT status FROM alerts WHERE id = %s", (alert_id,))
            row = await cur.fetchone()
            return row is not None and row["status"] == "resolved"

        await eventually(resolved)

        # Resuming from the last event id replays exactly what was missed, no snapshot.
        resumed = listen(http, clinician, last_event_id=opened.id)
        try:
            await eventually(lambda: _async(len(_of(resumed, patient)) >= 2))
            missed = _of(resumed, patient)
            assert [m.json()["event"]["status"] for m in missed] == ["acknowledged", "resolved"]
            assert missed[0].json()["event"]["note"] == "calling"
            assert missed[1].json()["alert"]["resolution"] == "manual"
            positions = [int(m.id or 0) for m in missed]
            assert int(opened.id or 0) < positions[0] < positions[1]
            assert not resumed.events("snapshot")
        finally:
            await resumed.stop()

        # The other team's clinician got none of it. A later alert of their own team proves
        # their stream was live all along (positions are delivered in commit order).
        await _publish_glucose(settings, other_device.device_id, 1, 2.5)
        await eventually(lambda: _async(_of(theirs, other_patient)))
        assert _of(theirs, patient) == []
        assert {m.json()["alert"]["patient_id"] for m in theirs.events()} == {str(other_patient)}

        # Heartbeats are comment lines; at each one the token is checked again.
        await eventually(lambda: _async(doomed.events("snapshot")))
        await db.execute(
            "DELETE FROM api_tokens WHERE user_id = (SELECT user_id FROM api_tokens WHERE token_hash = %s)",
            (token_digest(revoked),),
        )
        await eventually(lambda: _async(any(m.comment == "heartbeat" for m in theirs.received)), timeout=30)
        await eventually(lambda: _async(doomed.events("signed-out")), timeout=30)
        assert doomed.task is not None
        await eventually(lambda: _async(doomed.task.done()))  # the server ended the stream
    finally:
        await mine.stop()
        await theirs.stop()
        await doomed.stop()


async def _async(value: Any) -> Any:
    return value


async def test_stream_refuses_without_clinician_token_or_with_bad_position(
    db: psycopg.AsyncConnection[Any], http: httpx.AsyncClient
) -> None:
    patient = await make_patient(db, "team-sse-auth")
    own = await make_user(db, "patient", patient_id=patient)
    admin = await make_user(db, "admin")
    clinician = await make_user(db, "clinician", ["team-sse-auth"])
    assert (await http.get("/api/v1/alerts/stream")).status_code == 401
    assert (await http.get("/api/v1/alerts/stream", headers=auth("not-a-token"))).status_code == 401
    for token in (own, admin):
        refused = await http.get("/api/v1/alerts/stream", headers=auth(token))
        assert refused.status_code == 403
        assert refused.headers["content-type"].startswith("application/problem+json")
    bad = await http.get("/api/v1/alerts/stream", headers=auth(clinician) | {"Last-Event-ID": "abc"})
    assert bad.status_code == 422


async def test_positions_follow_commit_order(settings: Settings, db: psycopg.AsyncConnection[Any]) -> None:
    """An event inserted first but committed last gets the later position, so resuming after
    the earlier commit's position still delivers it."""
    patient = await make_patient(db, "team-sse-order")
    cur = await db.execute(
        """INSERT INTO alerts (patient_id, rule, severity, message, triggered_at)
           VALUES (%s, 'pulse', 'warning', 'Pulse high', now()) RETURNING id""",
        (patient,),
    )
    row = await cur.fetchone()
    assert row is not None and settings.database_url
    alert_id = row["id"]
    insert = "INSERT INTO alert_events (alert_id, status, actor) VALUES (%s, %s, 'test') RETURNING id"
    async with (
        await psycopg.AsyncConnection.connect(settings.database_url) as slow,
        await psycopg.AsyncConnection.connect(settings.database_url) as fast,
    ):
        slow_id = (await (await slow.execute(insert, (alert_id, "slow"))).fetchone() or [0])[0]
        fast_id = (await (await fast.execute(insert, (alert_id, "fast"))).fetchone() or [0])[0]
        assert slow_id < fast_id
        await fast.commit()
        await slow.commit()
    cur = await db.execute(
        "SELECT status, stream_pos FROM alert_events WHERE alert_id = %s ORDER BY stream_pos", (alert_id,)
    )
    rows = await cur.fetchall()
    assert [r["status"] for r in rows] == ["fast", "slow"]
    assert rows[0]["stream_pos"] < rows[1]["stream_pos"]


async def test_stream_survives_losing_its_database_listener(
    db: psycopg.AsyncConnection[Any], http: httpx.AsyncClient, settings: Settings
) -> None:
    """The hub's LISTEN connection is killed; it reconnects and catches up, and the client sees
    the alert raised meanwhile without reconnecting."""
    patient = await make_patient(db, "team-sse-drop")
    device = await make_device(db, patient, "glucometer")
    clinician = await make_user(db, "clinician", ["team-sse-drop"])
    stream = listen(http, clinician)
    try:
        await eventually(lambda: _async(stream.events("snapshot")))
        cur = await db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (APPLICATION_NAME,),
        )
        assert [r["pg_terminate_backend"] for r in await cur.fetchall()] == [True]
        await _publish_glucose(settings, device.device_id, 1, 2.4)
        await eventually(lambda: _async(_of(stream, patient)))
        assert [m.json()["event"]["status"] for m in _of(stream, patient)] == ["open"]
        assert len(stream.events("snapshot")) == 1  # the same connection, not a resumed one
    finally:
        await stream.stop()
