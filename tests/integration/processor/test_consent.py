"""Consent records over HTTP, and the consent filter in the running processor."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
from fhir.resources.R4B.bundle import Bundle

from simulators.publisher import Publisher
from tests.conftest import eventually
from tests.factories import auth, make_device, make_patient, make_user
from tests.research_support import RESEARCH_GLUCOSE, closed_hour, publish_glucose, put_consent


async def test_versions_history_roles_and_fhir(
    db: psycopg.AsyncConnection[Any], http: httpx.AsyncClient
) -> None:
    patient = await make_patient(db, "team-consent")
    other = await make_patient(db, "team-consent")
    me = await make_user(db, "patient", patient_id=patient)
    someone_else = await make_user(db, "patient", patient_id=other)
    admin = await make_user(db, "admin")
    clinician = await make_user(db, "clinician", ["team-consent"])
    outsider = await make_user(db, "clinician", ["team-elsewhere"])
    url = f"/api/v1/patients/{patient}/consent"

    empty = (await http.get(url, headers=auth(me))).json()
    assert empty["current"] is None and empty["default"] == "deny" and empty["history"] == []
    none = await http.get(
        "/api/v1/consent/decision",
        params={"patient_id": str(patient), "purpose": "research", "code": "glucose"},
        headers=auth(admin),
    )
    assert none.json()["decision"] == "no-consent" and none.json()["eligible"] is False

    first = await put_consent(http, me, patient, RESEARCH_GLUCOSE)
    assert first["current"]["version"] == 1 and first["current"]["recorded_by_role"] == "patient"
    second = await put_consent(http, admin, patient, RESEARCH_GLUCOSE, opt_out=True)
    assert second["current"]["version"] == 2 and second["current"]["recorded_by_role"] == "admin"
    assert [v["version"] for v in second["history"]] == [2, 1]

    # Outside the care team, or another patient: the answer a missing patient gets (404).
    for token, status in ((clinician, 200), (outsider, 404), (someone_else, 404), (admin, 200), (me, 200)):
        assert (await http.get(url, headers=auth(token))).status_code == status, token
    for token, status in ((clinician, 403), (someone_else, 404)):
        denied = await http.put(url, json={"provisions": []}, headers=auth(token))
        assert denied.status_code == status, denied.text

    fhir = await http.get(url, headers=auth(me) | {"Accept": "application/fhir+json"})
    assert fhir.status_code == 200 and fhir.headers["content-type"].startswith("application/fhir+json")
    bundle = Bundle.model_validate(fhir.json())
    resources = [e.resource for e in bundle.entry or []]
    assert [r.get_resource_type() for r in resources] == ["Consent", "Consent"]
    current = fhir.json()["entry"][0]["resource"]
    assert current["status"] == "active" and current["policy"][0]["uri"].endswith("national-data-opt-out")
    assert fhir.json()["entry"][1]["resource"]["status"] == "inactive"
    assert (await http.get(url, params={"format": "fhir"}, headers=auth(me))).json() == fhir.json()

    params = {"patient_id": str(patient), "purpose": "research", "code": "glucose"}
    decided = await http.get("/api/v1/consent/decision", params=params, headers=auth(me))
    assert decided.status_code == 200, decided.text
    assert decided.json() | {"decided_at": None} == {
        "patient_id": str(patient),
        "purpose": "research",
        "code": "glucose",
        "decision": "deny",
        "eligible": False,
        "consent_version": 2,
        "reason": "national data opt-out",
        "decided_at": None,
    }
    assert (
        await http.get("/api/v1/consent/decision", params=params, headers=auth(clinician))
    ).status_code == 403
    assert (
        await http.get("/api/v1/consent/decision", params=params, headers=auth(someone_else))
    ).status_code == 404
    third = await put_consent(http, me, patient, RESEARCH_GLUCOSE)
    decided = await http.get("/api/v1/consent/decision", params=params, headers=auth(me))
    assert third["current"]["version"] == 3 and decided.json()["decision"] == "permit"
    assert decided.json()["consent_version"] == 3
    spo2 = await http.get("/api/v1/consent/decision", params=params | {"code": "spo2"}, headers=auth(me))
    assert spo2.json()["decision"] == "deny" and spo2.json()["consent_version"] == 3


async def test_future_version_is_not_in_force_yet(
    db: psycopg.AsyncConnection[Any], http: httpx.AsyncClient
) -> None:
    patient = await make_patient(db, "team-consent")
    admin = await make_user(db, "admin")
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    await put_consent(http, admin, patient, RESEARCH_GLUCOSE)
    response = await http.put(
        f"/api/v1/patients/{patient}/consent",
        json={"provisions": [], "national_opt_out": True, "applies_from": later},
        headers=auth(admin),
    )
    assert response.json()["current"]["version"] == 1 and len(response.json()["history"]) == 2
    bad = await http.put(
        f"/api/v1/patients/{patient}/consent",
        json={"provisions": [{"purpose": "research", "decision": "permit", "codes": ["weight"]}]},
        headers=auth(admin),
    )
    assert bad.status_code == 422 and "unknown code" in bad.text


async def test_processor_records_eligibility_with_the_version_used(
    db: psycopg.AsyncConnection[Any], http: httpx.AsyncClient, publisher: Publisher
) -> None:
    admin = await make_user(db, "admin")
    permits, silent, opted_out = [await make_patient(db, "team-filter") for _ in range(3)]
    await put_consent(http, admin, permits, RESEARCH_GLUCOSE)
    await put_consent(http, admin, opted_out, RESEARCH_GLUCOSE, opt_out=True)
    hour = closed_hour(3)
    series = [(hour + timedelta(minutes=5), 6.5), (hour + timedelta(minutes=10), 99.0)]
    devices = await publish_glucose(db, publisher, {p: series for p in (permits, silent, opted_out)})
    cur = await db.execute(
        "SELECT patient_id, consent_version, eligible FROM reading_consent WHERE device_id = ANY(%s)",
        (list(devices.values()),),
    )
    decisions = {(r["patient_id"], r["consent_version"], tuple(r["eligible"])) for r in await cur.fetchall()}
    assert decisions == {(permits, 1, ("research",)), (silent, None, ()), (opted_out, 1, ())}
    cur = await db.execute(
        """SELECT patient_id, purpose, value, consent_version FROM research_readings
           WHERE patient_id = ANY(%s)""",
        ([permits, silent, opted_out],),
    )
    # the implausible 99 mmol/L was decided on but never fed to research
    assert await cur.fetchall() == [
        {"patient_id": permits, "purpose": "research", "value": 6.5, "consent_version": 1}
    ]
    cur = await db.execute(
        "SELECT n, total FROM research_hourly WHERE patient_id = %s AND purpose = 'research'", (permits,)
    )
    assert await cur.fetchall() == [{"n": 1, "total": 6.5}]


async def test_withdrawal_is_honoured_within_one_second_under_load(
    db: psycopg.AsyncConnection[Any], http: httpx.AsyncClient, publisher: Publisher
) -> None:
    """Readings stream for the patient and for background devices; the withdrawal applies to every
    reading whose consent was decided more than one second after the withdrawal committed."""
    admin = await make_user(db, "admin")
    patient = await make_patient(db, "team-load")
    await put_consent(http, admin, patient, RESEARCH_GLUCOSE)
    device = (await make_device(db, patient, "cgm")).device_id
    background = [
        (await make_device(db, await make_patient(db, "team-load"), "cgm")).device_id for _ in range(20)
    ]
    seq = itertools.count(1)
    patient_token = await make_user(db, "patient", patient_id=patient)
    stop = asyncio.Event()

    async def load() -> None:
        while not stop.is_set():
            n = next(seq)
            for d in [device, *background]:
                publisher.publish_reading(
                    d, n, [{"code": "glucose", "value": 7.0, "unit": "mmol/L", "source": "cgm"}]
                )
            await asyncio.sleep(0.02)  # ~1,000 readings/s

    task = asyncio.create_task(load())
    try:

        async def eligible_seen() -> bool:
            cur = await db.execute(
                "SELECT count(*) AS n FROM reading_consent WHERE device_id = %s AND eligible = '{research}'",
                (device,),
            )
            row = await cur.fetchone()
            return row is not None and row["n"] > 20

        await eventually(eligible_seen)
        await put_consent(http, patient_token, patient, [])  # withdraws: no provision permits anything
        cur = await db.execute(
            "SELECT recorded_at FROM patient_consents WHERE patient_id = %s AND version = 2", (patient,)
        )
        row = await cur.fetchone()
        assert row is not None
        committed: datetime = row["recorded_at"]

        async def decided_after(delay: float) -> int:
            cur = await db.execute(
                "SELECT count(*) AS n FROM reading_consent WHERE device_id = %s AND decided_at > %s",
                (device, committed + timedelta(seconds=delay)),
            )
            r = await cur.fetchone()
            return int(r["n"]) if r else 0

        await eventually(lambda: _at_least(decided_after(1.5), 50))
    finally:
        stop.set()
        await task
    cur = await db.execute(
        """SELECT consent_version, eligible, count(*) AS n FROM reading_consent
           WHERE device_id = %s AND decided_at > %s GROUP BY 1, 2""",
        (device, committed + timedelta(seconds=1)),
    )
    after = await cur.fetchall()
    assert after and all(r["consent_version"] == 2 and r["eligible"] == [] for r in after), after
    cur = await db.execute(
        "SELECT count(*) AS n FROM research_readings WHERE patient_id = %s AND consent_version = 2",
        (patient,),
    )
    assert (await cur.fetchone()) == {"n": 0}


async def _at_least(value: Any, n: int) -> bool:
    return bool(await value >= n)
