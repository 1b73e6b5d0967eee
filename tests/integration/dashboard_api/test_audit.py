"""The audit trail: reads and changes are recorded, the chain detects tampering, patients see
who accessed their data."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from telehealth.settings import Settings
from telehealth.storage import audit
from telehealth.storage.people import add_user
from tests.commands import telehealth
from tests.conftest import eventually
from tests.factories import auth, make_patient, make_user


async def _rows_for(db: psycopg.AsyncConnection[Any], patient: object) -> list[dict[str, Any]]:
    cur = await db.execute(
        "SELECT actor, role, purpose, action, detail FROM audit_log WHERE patient_id = %s ORDER BY id",
        (patient,),
    )
    return await cur.fetchall()


async def test_reads_and_changes_write_audit_rows(
    db: psycopg.AsyncConnection[Any], http: httpx.AsyncClient
) -> None:
    patient = await make_patient(db, "team-aud")
    clinician = await make_user(db, "clinician", ["team-aud"])
    outsider = await make_user(db, "clinician", ["team-aud-other"])
    me = (await http.get("/api/v1/auth/me", headers=auth(clinician))).json()["username"]

    assert (
        await http.get(f"/api/v1/patients/{patient}/observations?code=glucose", headers=auth(clinician))
    ).status_code == 200
    assert (
        await http.put(
            f"/api/v1/patients/{patient}/thresholds", json={"spo2_scale": 2}, headers=auth(clinician)
        )
    ).status_code == 200
    assert (
        await http.get(f"/api/v1/patients/{patient}/thresholds", headers=auth(clinician))
    ).status_code == 200
    assert (
        await http.get(f"/api/v1/patients/{patient}/observations", headers=auth(outsider))
    ).status_code == 404

    rows = await _rows_for(db, patient)
    assert [(r["actor"], r["action"]) for r in rows][-4:] == [
        (me, "observations.read"),
        (me, "thresholds.update"),
        (me, "thresholds.read"),
        (rows[-1]["actor"], "access.denied"),
    ]
    assert rows[-1]["actor"] != me and rows[-1]["role"] == "clinician"
    assert rows[-4]["purpose"] == "direct-care" and rows[-4]["detail"]["code"] == "glucose"

    listed = await http.get("/api/v1/patients", headers=auth(clinician))
    assert listed.status_code == 200
    cur = await db.execute(
        "SELECT detail FROM audit_log WHERE actor = %s AND action = 'patients.list' ORDER BY id DESC LIMIT 1",
        (me,),
    )
    row = await cur.fetchone()
    assert row is not None and str(patient) in row["detail"]["patients"]


async def test_alert_actions_are_audited_with_the_change(
    db: psycopg.AsyncConnection[Any], http: httpx.AsyncClient
) -> None:
    patient = await make_patient(db, "team-aud-alert")
    clinician = await make_user(db, "clinician", ["team-aud-alert"])
    cur = await db.execute(
        """INSERT INTO alerts (patient_id, rule, severity, message, triggered_at)
           VALUES (%s, 'spo2_low', 'urgent', 'SpO2 85 %%', now()) RETURNING id""",
        (patient,),
    )
    row = await cur.fetchone()
    assert row is not None
    alert_id = row["id"]
    inbox = await http.get("/api/v1/alerts", headers=auth(clinician))
    assert inbox.status_code == 200 and any(a["id"] == alert_id for a in inbox.json())
    ack = await http.post(
        f"/api/v1/alerts/{alert_id}/acknowledge", json={"note": "calling"}, headers=auth(clinician)
    )
    assert ack.status_code == 200, ack.text
    rows = await _rows_for(db, patient)
    assert rows[-1]["action"] == "alert.acknowledge" and rows[-1]["detail"] == {"alert_id": alert_id}
    cur = await db.execute(
        "SELECT detail FROM audit_log WHERE action = 'alerts.list' ORDER BY id DESC LIMIT 1"
    )
    listed = await cur.fetchone()
    assert listed is not None and str(patient) in listed["detail"]["patients"]


async def test_patient_sees_who_accessed_their_data(
    db: psycopg.AsyncConnection[Any], http: httpx.AsyncClient
) -> None:
    mine = await make_patient(db, "team-aud-log")
    theirs = await make_patient(db, "team-aud-log")
    me = await make_user(db, "patient", patient_id=mine)
    clinician = await make_user(db, "clinician", ["team-aud-log"])
    admin = await make_user(db, "admin")
    doctor = (await http.get("/api/v1/auth/me", headers=auth(clinician))).json()["username"]
    await http.get(f"/api/v1/patients/{mine}/observations", headers=auth(clinician))
    await http.get("/api/v1/patients", headers=auth(clinician))
    await http.get(f"/api/v1/patients/{theirs}/observations", headers=auth(clinician))

    log = await http.get(f"/api/v1/patients/{mine}/access-log", headers=auth(me))
    assert log.status_code == 200, log.text
    assert log.headers["cache-control"] == "no-store"
    entries = log.json()
    seen = [(e["actor"], e["purpose"], e["action"]) for e in entries]
    assert (doctor, "direct-care", "observations.read") in seen
    assert (doctor, "direct-care", "patients.list") in seen
    listing = next(e for e in entries if e["action"] == "patients.list")
    # The patient learns they were shown in a list, not who else was.
    assert listing["detail"] == {"shown_in_list": True}
    assert str(theirs) not in log.text
    assert all(e["action"] != "access_log.read" for e in entries)  # recorded after it was read

    again = (await http.get(f"/api/v1/patients/{mine}/access-log?limit=1", headers=auth(me))).json()
    assert len(again) == 1 and again[0]["action"] == "access_log.read"
    assert (await http.get(f"/api/v1/patients/{mine}/access-log", headers=auth(admin))).status_code == 200
    assert (await http.get(f"/api/v1/patients/{theirs}/access-log", headers=auth(me))).status_code == 404
    assert (await http.get(f"/api/v1/patients/{mine}/access-log", headers=auth(clinician))).status_code == 403

    # Another patient probing this record is shown to the patient, but not by name.
    prober = await make_user(db, "patient", patient_id=theirs)
    prober_name = (await http.get("/api/v1/auth/me", headers=auth(prober))).json()["username"]
    assert (await http.get(f"/api/v1/patients/{mine}/observations", headers=auth(prober))).status_code == 404
    latest = (await http.get(f"/api/v1/patients/{mine}/access-log?limit=2", headers=auth(me))).json()
    assert latest[0]["action"] == "access.denied" and latest[0]["actor"] == "another patient"
    assert prober_name not in str(latest)
    by_admin = (await http.get(f"/api/v1/patients/{mine}/access-log?limit=3", headers=auth(admin))).json()
    assert any(e["actor"] == prober_name and e["action"] == "access.denied" for e in by_admin)

    page = await http.get("/access-log", follow_redirects=True)
    assert page.status_code == 200 and "access-log.js" in page.text and "<script>" not in page.text
    assert (await http.get("/static/access-log.js")).status_code == 200


async def test_the_table_refuses_update_delete_and_truncate(db: psycopg.AsyncConnection[Any]) -> None:
    user = await add_user(db, "audit-writer", "admin")
    await audit.record(db, actor=user, purpose="administration", patient_id=None, action="test.append")
    for statement in (
        "UPDATE audit_log SET actor = 'someone-else'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            await db.execute(statement)


async def test_concurrent_appends_keep_one_linear_chain(
    settings: Settings, db: psycopg.AsyncConnection[Any]
) -> None:
    assert settings.database_url
    user = await add_user(db, "audit-concurrent", "admin")
    before = await audit.head(db)

    async def append(i: int) -> int:
        assert settings.database_url
        async with await psycopg.AsyncConnection.connect(
            settings.database_url, autocommit=True, row_factory=dict_row
        ) as conn:
            return await audit.record(
                conn,
                actor=user,
                purpose="administration",
                patient_id=None,
                action="test.concurrent",
                detail={"i": i},
            )

    ids = await asyncio.gather(*(append(i) for i in range(20)))
    assert sorted(ids) == list(range(before.id + 1, before.id + 21))
    result = await audit.verify(db)
    assert result.ok, result.problem


async def test_an_append_does_not_wait_for_the_alert_streams_lock(
    settings: Settings, db: psycopg.AsyncConnection[Any]
) -> None:
    """The alert stream numbers events at commit under advisory lock 7301943 (the trigger of
    migration 0008). The chain used the same key until 0014, so every audited read waited for a
    processor commit carrying alert events; the chain now has a key of its own."""
    assert settings.database_url
    user = await add_user(db, "audit-own-lock", "admin")
    async with await psycopg.AsyncConnection.connect(settings.database_url) as holder:
        await holder.execute("SELECT pg_advisory_xact_lock(7301943)")  # held until rollback
        try:
            row_id = await asyncio.wait_for(
                audit.record(db, actor=user, purpose="administration", patient_id=None, action="test.lock"),
                timeout=5,
            )
        finally:
            await holder.rollback()
    assert row_id == (await audit.head(db)).id
    assert (await audit.verify(db)).ok


async def test_a_read_does_not_hold_the_chain_while_its_data_is_read(
    settings: Settings, db: psycopg.AsyncConnection[Any], http: httpx.AsyncClient
) -> None:
    """An append holds the chain's lock until its transaction ends; a read that kept its
    transaction open while it read and sent the data would make every audited request in the
    system wait for the slowest read. The API commits each statement: here one read's data is
    held back (its table locked), its audit row is already committed, and another clinician's
    audited request goes through meanwhile."""
    assert settings.database_url
    patient = await make_patient(db, "team-aud-lock")
    clinician = await make_user(db, "clinician", ["team-aud-lock"])
    other = await make_user(db, "clinician", ["team-aud-lock"])
    async with await psycopg.AsyncConnection.connect(settings.database_url) as blocker:
        await blocker.execute("LOCK TABLE readings IN ACCESS EXCLUSIVE MODE")  # until rollback
        try:
            slow = asyncio.create_task(
                http.get(f"/api/v1/patients/{patient}/observations", headers=auth(clinician))
            )

            async def recorded() -> bool:
                return any(r["action"] == "observations.read" for r in await _rows_for(db, patient))

            await eventually(recorded, timeout=5)
            meanwhile = await asyncio.wait_for(
                http.get(f"/api/v1/patients/{patient}/thresholds", headers=auth(other)), timeout=5
            )
            assert meanwhile.status_code == 200
            assert not slow.done()
        finally:
            await blocker.rollback()
    assert (await slow).status_code == 200
    assert [r["action"] for r in await _rows_for(db, patient)] == ["observations.read", "thresholds.read"]
    assert (await audit.verify(db)).ok


async def test_an_append_in_the_callers_transaction_rolls_back_with_it(
    db: psycopg.AsyncConnection[Any],
) -> None:
    user = await add_user(db, "audit-rollback", "admin")
    before = await audit.head(db)
    with pytest.raises(RuntimeError, match="the change failed"):
        async with db.transaction():
            await audit.record(db, actor=user, purpose="administration", patient_id=None, action="test.tx")
            raise RuntimeError("the change failed")
    assert await audit.head(db) == before
    row_id = await audit.record(db, actor=user, purpose="administration", patient_id=None, action="test.tx")
    assert row_id == before.id + 1 and (await audit.verify(db)).ok


async def _tamper(db: psycopg.AsyncConnection[Any], sql: str, params: tuple[Any, ...]) -> None:
    """As the database superuser: the one way around the append-only trigger."""
    await db.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
    try:
        await db.execute(sql, params)
    finally:
        await db.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")


async def test_verify_finds_the_first_tampered_row(
    settings: Settings, db: psycopg.AsyncConnection[Any], http: httpx.AsyncClient
) -> None:
    patient = await make_patient(db, "team-aud-tamper")
    clinician = await make_user(db, "clinician", ["team-aud-tamper"])
    for _ in range(3):
        await http.get(f"/api/v1/patients/{patient}/observations", headers=auth(clinician))
    rows = await _rows_for(db, patient)
    assert len(rows) == 3
    cur = await db.execute("SELECT * FROM audit_log WHERE patient_id = %s ORDER BY id", (patient,))
    victim = (await cur.fetchall())[1]

    ok = telehealth(settings, "audit", "verify")
    assert ok.returncode == 0 and "audit chain intact" in ok.stdout, ok.stderr
    head = telehealth(settings, "audit", "head")
    published = head.stdout.strip()
    assert published.split(":")[0].isdigit() and len(published.split(":")[1]) == 64

    # An insider rewrites who read the record: the hash no longer matches.
    await _tamper(db, "UPDATE audit_log SET actor = 'nobody' WHERE id = %s", (victim["id"],))
    try:
        found = await audit.verify(db)
        assert not found.ok and found.first_bad_id == victim["id"] and "altered" in (found.problem or "")
        cli = telehealth(settings, "audit", "verify")
        assert cli.returncode == 1 and f"BROKEN at row {victim['id']}" in cli.stderr, cli.stdout + cli.stderr
    finally:
        await _tamper(db, "UPDATE audit_log SET actor = %s WHERE id = %s", (victim["actor"], victim["id"]))
    assert (await audit.verify(db)).ok

    # Removing the row leaves a gap at its number.
    await _tamper(db, "DELETE FROM audit_log WHERE id = %s", (victim["id"],))
    try:
        found = await audit.verify(db)
        assert not found.ok and found.first_bad_id == victim["id"] and "missing" in (found.problem or "")
    finally:
        columns = [c for c in victim]
        await db.execute(
            f"INSERT INTO audit_log ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})",
            tuple(psycopg.types.json.Jsonb(victim[c]) if c == "detail" else victim[c] for c in columns),
        )
    assert (await audit.verify(db)).ok

    # The published head still checks out; a head that was never there does not.
    assert telehealth(settings, "audit", "verify", "--expect", published).returncode == 0
    wrong = published.split(":")[0] + ":" + "0" * 64
    assert telehealth(settings, "audit", "verify", "--expect", wrong).returncode == 1


async def test_admin_reads_the_chain_head(db: psycopg.AsyncConnection[Any], http: httpx.AsyncClient) -> None:
    admin = await make_user(db, "admin")
    clinician = await make_user(db, "clinician", ["t"])
    head = await http.get("/api/v1/audit/head", headers=auth(admin))
    assert head.status_code == 200
    expected = await audit.head(db)
    assert head.json()["id"] == expected.id and head.json()["hash"] == expected.hash
    assert (await http.get("/api/v1/audit/head", headers=auth(clinician))).status_code == 403


async def test_shell_work_is_recorded_as_an_operator(db: psycopg.AsyncConnection[Any]) -> None:
    patient = await make_patient(db, "team-aud-op")
    row_id = await audit.record(
        db,
        actor=audit.operator("cli"),
        purpose="administration",
        patient_id=patient,
        action="device.provision",
    )
    cur = await db.execute("SELECT actor, actor_id, role FROM audit_log WHERE id = %s", (row_id,))
    row = await cur.fetchone()
    assert row is not None and row["role"] == "operator" and row["actor_id"] is None
    assert row["actor"].startswith("cli:")
    assert (await audit.verify(db)).ok
