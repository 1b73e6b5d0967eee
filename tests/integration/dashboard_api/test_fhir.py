"""The FHIR R4 endpoint through the real API: scoping, paging, flags, the CGM IG summary (equal
to the dashboard's) and submission bundle, and reads through real FHIR clients (fhirpy, fhirclient)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import httpx
import psycopg
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.device import Device
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.patient import Patient

from telehealth.fhir import cgm_codes as ig
from tests.factories import auth, make_device, make_patient, make_user
from tests.fhir_ig import conformance_errors

FHIR_JSON = "application/fhir+json"
_INSERT = """INSERT INTO readings (patient_id, measured_at, code, value, unit, loinc, source, device_id,
                                   seq, received_at, quality)
             VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"""
_RECEIPT = """INSERT INTO reading_receipts (device_id, seq, patient_id, measured_at, received_at, stored_at)
              VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"""


async def _seed(
    db: psycopg.AsyncConnection[Any],
    patient: UUID,
    rows: list[tuple[datetime, str, float, str, str, int, list[str]]],
    stored_at: datetime | None = None,
) -> None:
    """(measured_at, code, value, source, device_id, seq, quality) rows, each with a receipt."""
    units = {"glucose": ("mmol/L", "15074-8"), "spo2": ("%", "59408-5"), "pulse": ("/min", "8867-4")}
    async with db.cursor() as cur:
        for at, code, value, source, device, seq, quality in rows:
            unit, loinc = units[code]
            if source == "cgm":
                loinc = "105272-9"
            await cur.execute(
                _INSERT,
                (patient, at, code, value, unit, loinc, source or None, device, seq, at, quality),
            )
            await cur.execute(_RECEIPT, (device, seq, patient, at, at, stored_at or at))


async def _count(db: psycopg.AsyncConnection[Any], patient: UUID, action: str) -> int:
    cur = await db.execute(
        "SELECT count(*) AS n FROM audit_log WHERE patient_id = %s AND action = %s", (patient, action)
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row["n"])


def _outcome(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(FHIR_JSON)
    body = response.json()
    OperationOutcome.model_validate(body)
    return str(body["issue"][0]["diagnostics"])


async def test_fhir_reads_are_scoped_paged_flagged_and_audited(
    db: psycopg.AsyncConnection[Any], http: httpx.AsyncClient
) -> None:
    patient = await make_patient(db, "team-fhir")
    other = await make_patient(db, "team-fhir-other")
    cgm = await make_device(db, patient, "cgm")
    oximeter = await make_device(db, patient, "oximeter")
    clinician = await make_user(db, "clinician", ["team-fhir"])
    outsider = await make_user(db, "clinician", ["team-fhir-other"])
    own = await make_user(db, "patient", patient_id=patient)
    other_patient = await make_user(db, "patient", patient_id=other)
    researcher = await make_user(db, "researcher")
    admin = await make_user(db, "admin")

    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    rows = [
        (t0 + timedelta(minutes=5 * k), "glucose", 5.0 + k / 10, "cgm", cgm.device_id, k, [])
        for k in range(6)
    ]
    rows[1] = (*rows[1][:6], ["late"])
    rows[2] = (rows[2][0], "glucose", 45.0, "cgm", cgm.device_id, 2, ["implausible"])
    rows += [
        (t0 + timedelta(minutes=7), "spo2", 82.0, "", oximeter.device_id, 1, ["artefact"]),
        (t0 + timedelta(minutes=7), "pulse", 71.0, "", oximeter.device_id, 1, []),
    ]
    await _seed(db, patient, rows, stored_at=t0 + timedelta(hours=1))

    # metadata: public, FHIR JSON
    meta = await http.get("/fhir/metadata")
    assert meta.status_code == 200 and meta.headers["content-type"].startswith(FHIR_JSON)
    assert meta.json()["resourceType"] == "CapabilityStatement"

    # Patient: the care team and the patient; everyone else refused as the JSON API refuses
    read = await http.get(f"/fhir/Patient/{patient}", headers=auth(clinician))
    assert read.status_code == 200 and read.headers["content-type"].startswith(FHIR_JSON)
    Patient.model_validate(read.json())
    assert read.json()["id"] == str(patient)
    assert (await http.get(f"/fhir/Patient/{patient}", headers=auth(own))).status_code == 200
    for token in (outsider, other_patient):
        assert "in your care" in _outcome(
            await http.get(f"/fhir/Patient/{patient}", headers=auth(token)), 404
        )
    missing = await http.get("/fhir/Patient/00000000-0000-4000-8000-000000000000", headers=auth(clinician))
    assert _outcome(missing, 404)
    for token in (researcher, admin):
        _outcome(await http.get(f"/fhir/Patient/{patient}", headers=auth(token)), 403)
    unauthenticated = await http.get(f"/fhir/Patient/{patient}")
    _outcome(unauthenticated, 401)
    assert unauthenticated.headers["www-authenticate"] == "Bearer"

    # Patient lookup by NHS number: only patients in the caller's care are found; a match outside
    # it is audited as refused, as a read is
    cur = await db.execute("SELECT nhs_number FROM patients WHERE id = %s", (patient,))
    nhs = (await cur.fetchone())["nhs_number"]
    lookup = f"/fhir/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{nhs}"
    denied_before = await _count(db, patient, "access.denied")
    for token, found in ((clinician, 1), (own, 1), (outsider, 0), (other_patient, 0)):
        hits = await http.get(lookup, headers=auth(token))
        assert hits.status_code == 200, hits.text
        Bundle.model_validate(hits.json())
        assert [e["resource"]["id"] for e in hits.json().get("entry", [])] == [str(patient)] * found
    assert await _count(db, patient, "access.denied") == denied_before + 2
    by_id = await http.get(
        f"/fhir/Patient?identifier=urn:telehealth:patient|{patient}", headers=auth(clinician)
    )
    assert len(by_id.json()["entry"]) == 1
    _outcome(await http.get(lookup, headers=auth(researcher)), 403)
    _outcome(await http.get("/fhir/Patient", headers=auth(clinician)), 400)
    _outcome(await http.get("/fhir/Patient?identifier=http://other|1", headers=auth(clinician)), 400)

    # Observation search, a page of 3 at a time: every reading once, oldest first
    url: str | None = f"/fhir/Observation?patient={patient}&_count=3"
    seen: list[dict[str, Any]] = []
    pages = 0
    while url:
        page = await http.get(url, headers=auth(clinician))
        assert page.status_code == 200, page.text
        body = page.json()
        Bundle.model_validate(body)
        assert body["type"] == "searchset" and len(body["entry"]) <= 3
        seen += [e["resource"] for e in body["entry"]]
        url = next((link["url"] for link in body["link"] if link["relation"] == "next"), None)
        pages += 1
    assert pages == 3 and len(seen) == len(rows) == 8
    assert len({o["id"] for o in seen}) == 8
    times = [o["effectiveDateTime"] for o in seen]
    assert times == sorted(times)
    flags = {
        o["code"]["coding"][1]["code"] + str(o["valueQuantity"]["value"]): [
            i["coding"][0]["code"] for i in o.get("interpretation", [])
        ]
        for o in seen
    }
    assert (
        flags["glucose5.1"] == ["late"]
        and flags["glucose45.0"] == ["implausible"]
        and flags["spo282.0"] == ["artefact"]
    )
    assert flags["pulse71.0"] == [] and flags["glucose5.0"] == []
    for o in seen:
        Observation.model_validate(o)
        assert o["subject"]["reference"] == f"Patient/{patient}"
        if o["code"]["coding"][0]["code"] == ig.SENSOR_READING_MOLAR:
            assert conformance_errors(o) == []

    async def ids(query: str, token: str = clinician) -> list[float]:
        r = await http.get(f"/fhir/Observation?patient={patient}&{query}", headers=auth(token))
        assert r.status_code == 200, r.text
        return [e["resource"]["valueQuantity"]["value"] for e in r.json().get("entry", [])]

    assert await ids("code=http://loinc.org|59408-5") == [82.0]
    assert await ids("code=8867-4,59408-5") == [71.0, 82.0]  # same time: pulse, then spo2
    assert len(await ids("code=urn:telehealth:code|glucose")) == 6
    assert await ids("code=http://loinc.org|15074-8") == []  # CGM glucose is 105272-9
    start, end = t0 + timedelta(minutes=10), t0 + timedelta(minutes=20)
    assert await ids(
        f"date=ge{start.isoformat().replace('+00:00', 'Z')}&date=lt{end.isoformat().replace('+00:00', 'Z')}"
    ) == [45.0, 5.3]  # minutes 10 and 15
    later = (t0 + timedelta(hours=1, seconds=1)).isoformat().replace("+00:00", "Z")
    assert await ids(f"_lastUpdated=ge{later}") == []
    assert len(await ids(f"_lastUpdated=lt{later}")) == 8
    assert len(await ids("_count=100", own)) == 8  # the patient reads their own

    # refusals are OperationOutcomes, and an unknown parameter is never ignored
    assert "not supported" in _outcome(
        await http.get(f"/fhir/Observation?patient={patient}&value=5", headers=auth(clinician)), 400
    )
    assert "required" in _outcome(await http.get("/fhir/Observation", headers=auth(clinician)), 400)
    _outcome(
        await http.get(f"/fhir/Observation?patient={patient}&date=ne2026-01-01", headers=auth(clinician)), 400
    )
    _outcome(
        await http.get(f"/fhir/Observation?patient={patient}&_cursor=forged", headers=auth(clinician)), 400
    )
    _outcome(await http.get(f"/fhir/Observation?patient={patient}&_count=0", headers=auth(clinician)), 400)
    _outcome(await http.get("/fhir/Patient/not-a-uuid", headers=auth(clinician)), 400)
    _outcome(await http.get("/fhir/Medication/1", headers=auth(clinician)), 404)
    _outcome(await http.post("/fhir/Observation", headers=auth(clinician), json={}), 405)
    for token in (outsider, other_patient):
        _outcome(await http.get(f"/fhir/Observation?patient={patient}", headers=auth(token)), 404)
        _outcome(await http.get(f"/fhir/Observation?subject=Patient/{patient}", headers=auth(token)), 404)
    _outcome(await http.get(f"/fhir/Observation?patient={patient}", headers=auth(researcher)), 403)

    # Device: read and search; another team's device is a 404 that names no patient
    device = await http.get(f"/fhir/Device/{cgm.device_id}", headers=auth(clinician))
    assert device.status_code == 200, device.text
    Device.model_validate(device.json())
    assert device.json()["patient"]["reference"] == f"Patient/{patient}"
    assert conformance_errors(device.json()) == []
    refused = _outcome(await http.get(f"/fhir/Device/{cgm.device_id}", headers=auth(outsider)), 404)
    assert str(patient) not in refused
    devices = await http.get(f"/fhir/Device?patient={patient}", headers=auth(own))
    assert sorted(e["resource"]["id"] for e in devices.json()["entry"]) == sorted(
        [cgm.device_id, oximeter.device_id]
    )
    _outcome(await http.get(f"/fhir/Device?patient={patient}", headers=auth(outsider)), 404)

    # Flag: the patient's alerts, for the care team only (as the alert inbox)
    for rule, state in (("glucose_low", "resolved"), ("spo2_low", "open"), ("pulse_high", "acknowledged")):
        await db.execute(
            """INSERT INTO alerts (patient_id, rule, severity, status, message, device_id, triggered_at,
                                   resolved_at)
               VALUES (%s, %s, 'urgent', %s, %s, %s, now(), CASE WHEN %s = 'resolved' THEN now() END)""",
            (patient, rule, state, f"{rule} message", oximeter.device_id, state),
        )
    flags = await http.get(f"/fhir/Flag?patient={patient}&_count=2", headers=auth(clinician))
    assert flags.status_code == 200, flags.text
    Bundle.model_validate(flags.json())
    first_page = [e["resource"]["code"]["coding"][0]["code"] for e in flags.json()["entry"]]
    assert first_page == ["pulse_high", "spo2_low"]  # newest first
    onward = next(link["url"] for link in flags.json()["link"] if link["relation"] == "next")
    rest = (await http.get(onward, headers=auth(clinician))).json()
    assert [e["resource"]["status"] for e in rest["entry"]] == ["inactive"]
    active = await http.get(f"/fhir/Flag?patient={patient}&status=active", headers=auth(clinician))
    assert len(active.json()["entry"]) == 2
    _outcome(await http.get(f"/fhir/Flag?patient={patient}&status=closed", headers=auth(clinician)), 400)
    _outcome(await http.get(f"/fhir/Flag?patient={patient}", headers=auth(outsider)), 404)
    _outcome(await http.get(f"/fhir/Flag?patient={patient}", headers=auth(own)), 403)

    # Consent: the existing FHIR rendering, readable by the care team
    consent = await http.get(f"/fhir/Consent?patient={patient}", headers=auth(clinician))
    assert consent.status_code == 200 and consent.json()["type"] == "searchset"

    # every read is in the patient's audit trail, and so are the refusals
    cur = await db.execute(
        "SELECT action, count(*) AS n FROM audit_log WHERE patient_id = %s GROUP BY action", (patient,)
    )
    actions = {r["action"]: r["n"] for r in await cur.fetchall()}
    assert {
        "fhir.patient.read",
        "fhir.observations.read",
        "fhir.devices.read",
        "access.denied",
        "consent.read",
    } <= set(actions)
    assert actions["fhir.observations.read"] >= pages


async def test_cgm_summary_equals_the_dashboards_and_the_bundle_is_the_igs(
    db: psycopg.AsyncConnection[Any], http: httpx.AsyncClient
) -> None:
    patient = await make_patient(db, "team-fhir-cgm")
    cgm = await make_device(db, patient, "cgm")
    meter = await make_device(db, patient, "glucometer")
    clinician = await make_user(db, "clinician", ["team-fhir-cgm"])
    outsider = await make_user(db, "clinician", ["team-other"])
    now = datetime.now(UTC)
    values = [2.5, 3.2, 3.9, 5.5, 7.7, 10.0, 10.1, 12.0, 13.9, 14.5, 16.0, 6.2] * 8
    rows = [
        (
            now - timedelta(minutes=3 + 5 * k),
            "glucose",
            v,
            "cgm",
            cgm.device_id,
            k,
            ["late"] if k == 4 else [],
        )
        for k, v in enumerate(values)
    ]
    rows.append((now - timedelta(minutes=8), "glucose", 45.0, "cgm", cgm.device_id, 900, ["implausible"]))
    rows.append((now - timedelta(minutes=9), "glucose", 2.0, "smbg", meter.device_id, 1, []))
    await _seed(db, patient, rows)

    # The dashboard's period ends when it is asked: read it before and after the FHIR summary
    # and compare once both dashboard answers agree on the expected number of readings.
    for _ in range(5):
        before = (
            await http.get(f"/api/v1/patients/{patient}/glucose-summary?days=2", headers=auth(clinician))
        ).json()
        response = await http.get(f"/fhir/Patient/{patient}/$cgm-summary?days=2", headers=auth(clinician))
        after = (
            await http.get(f"/api/v1/patients/{patient}/glucose-summary?days=2", headers=auth(clinician))
        ).json()
        if before["expected_readings"] == after["expected_readings"]:
            break
    assert response.status_code == 200, response.text
    dashboard = before
    bundle = response.json()
    Bundle.model_validate(bundle)
    assert bundle["type"] == "collection"
    by = {e["resource"]["code"]["coding"][0]["code"]: e["resource"] for e in bundle["entry"]}
    for r in by.values():
        assert conformance_errors(r) == [], r["code"]
    head = bundle["entry"][0]["resource"]
    assert head["code"]["coding"][0]["code"] == ig.SUMMARY
    zone = ZoneInfo(dashboard["timezone"])
    assert head["effectivePeriod"] == {
        "start": dashboard["start"][:10],  # the first day's local midnight
        "end": datetime.fromisoformat(dashboard["end"]).astimezone(zone).date().isoformat(),
    }
    value = {code: r.get("valueQuantity", {}).get("value") for code, r in by.items()}
    assert value[ig.MEAN_MASS] == dashboard["mean_mg_dl"]
    assert value[ig.MEAN_MOLAR] == dashboard["mean_mmol_l"]
    assert value[ig.GMI] == dashboard["gmi_pct"]
    assert value[ig.CV] == dashboard["cv_pct"]
    assert value[ig.DAYS_OF_WEAR] == dashboard["days_with_data"]
    assert value[ig.SENSOR_ACTIVE] == dashboard["data_sufficiency_pct"]
    ranges = {
        c["code"]["coding"][0]["code"]: c["valueQuantity"]["value"]
        for c in by[ig.TIMES_IN_RANGES]["component"]
    }
    assert ranges == {ig.RANGE_COMPONENTS[band]: share for band, share in dashboard["time_in_ranges"].items()}
    assert dashboard["readings"] == len(values)

    # the same period by its dates gives the same values
    first = head["effectivePeriod"]["start"]
    dated = await http.get(f"/fhir/Patient/{patient}/$cgm-summary?start={first}", headers=auth(clinician))
    dated_by = {e["resource"]["code"]["coding"][0]["code"]: e["resource"] for e in dated.json()["entry"]}
    assert dated_by[ig.MEAN_MASS]["valueQuantity"]["value"] == dashboard["mean_mg_dl"]
    _outcome(
        await http.get(f"/fhir/Patient/{patient}/$cgm-summary?days=2&start={first}", headers=auth(clinician)),
        400,
    )
    _outcome(await http.get(f"/fhir/Patient/{patient}/$cgm-summary?days=91", headers=auth(clinician)), 400)
    _outcome(await http.get(f"/fhir/Patient/{patient}/$cgm-summary?period=7", headers=auth(clinician)), 400)

    # the submission bundle: a transaction of the patient, the CGM, the summary and the readings
    sub = await http.get(f"/fhir/Patient/{patient}/$cgm-bundle?days=2", headers=auth(clinician))
    assert sub.status_code == 200, sub.text
    transaction = sub.json()
    Bundle.model_validate(transaction)
    assert conformance_errors(transaction) == []
    kinds = [e["resource"]["resourceType"] for e in transaction["entry"]]
    assert kinds.count("Patient") == 1 and kinds.count("Device") == 1
    readings = [e["resource"] for e in transaction["entry"] if e["resource"].get("effectiveDateTime")]
    assert len(readings) == len(values)  # the readings the summary counted: no finger-prick, no implausible
    urls = {e["fullUrl"] for e in transaction["entry"]}
    assert all(r["subject"]["reference"] in urls and r["device"]["reference"] in urls for r in readings)
    mass = await http.get(f"/fhir/Patient/{patient}/$cgm-bundle?days=2&unit=mg/dL", headers=auth(clinician))
    in_mg = [e["resource"] for e in mass.json()["entry"] if e["resource"].get("effectiveDateTime")]
    assert conformance_errors(mass.json()) == []
    assert {r["meta"]["profile"][0] for r in in_mg} == {ig.PROFILE_SENSOR_READING_MASS}
    assert sorted(r["valueQuantity"]["value"] for r in in_mg) == sorted(
        round(v * 18.01559, 1) for v in values
    )
    lean = await http.get(
        f"/fhir/Patient/{patient}/$cgm-bundle?days=2&readings=false", headers=auth(clinician)
    )
    assert len(lean.json()["entry"]) == 1 + 1 + 8

    for op in ("$cgm-summary", "$cgm-bundle"):
        _outcome(await http.get(f"/fhir/Patient/{patient}/{op}", headers=auth(outsider)), 404)
    cur = await db.execute("SELECT DISTINCT action FROM audit_log WHERE patient_id = %s", (patient,))
    assert {"fhir.cgm_summary.read", "fhir.cgm_bundle.read"} <= {r["action"] for r in await cur.fetchall()}


async def test_real_fhir_clients_read_the_endpoint(db: psycopg.AsyncConnection[Any], api_url: str) -> None:
    from fhirclient.models.observation import Observation as R4Observation
    from fhirclient.models.patient import Patient as R4Patient
    from fhirclient.server import FHIRServer
    from fhirpy import AsyncFHIRClient

    patient = await make_patient(db, "team-fhir-clients")
    cgm = await make_device(db, patient, "cgm")
    token = await make_user(db, "clinician", ["team-fhir-clients"])
    now = datetime.now(UTC)
    await _seed(
        db,
        patient,
        [
            (now - timedelta(minutes=5 * k), "glucose", 6.0 + k / 10, "cgm", cgm.device_id, k, [])
            for k in range(7)
        ],
    )

    client = AsyncFHIRClient(f"{api_url}/fhir", authorization=f"Bearer {token}")
    record = await client.reference("Patient", str(patient)).to_resource()
    assert record["id"] == str(patient)
    found = await client.resources("Observation").search(patient=str(patient)).limit(2).fetch_all()
    assert len(found) == 7  # fetch_all follows the next links
    assert sorted(o["valueQuantity"]["value"] for o in found) == [6.0 + k / 10 for k in range(7)]
    devices = await client.resources("Device").search(patient=str(patient)).fetch()
    assert [d["id"] for d in devices] == [cgm.device_id]

    def with_fhirclient() -> tuple[str, list[float]]:
        server = FHIRServer(None, base_uri=f"{api_url}/fhir/")
        server.session.headers["Authorization"] = f"Bearer {token}"
        person = R4Patient.read(str(patient), server)  # parsed by fhirclient's own R4 models
        search = R4Observation.where(struct={"patient": str(patient), "_count": "3"})
        values = [o.valueQuantity.value for o in search.perform_resources_iter(server)]
        return person.id, values

    person_id, values = await asyncio.to_thread(with_fhirclient)
    assert person_id == str(patient)
    assert sorted(values) == [6.0 + k / 10 for k in range(7)]


async def test_fhir_answers_are_never_cached_and_middleware_refusals_are_outcomes(
    db: psycopg.AsyncConnection[Any], http: httpx.AsyncClient
) -> None:
    patient = await make_patient(db, "team-fhir-headers")
    clinician = await make_user(db, "clinician", ["team-fhir-headers"])
    read = await http.get(f"/fhir/Patient/{patient}", headers=auth(clinician))
    assert read.status_code == 200 and read.headers["cache-control"] == "no-store"
    nul = await http.get(f"/fhir/Observation?patient={patient}&code=%00", headers=auth(clinician))
    assert "NUL" in _outcome(nul, 400)
    big = await http.request(
        "GET", f"/fhir/Patient/{patient}", content=b"x" * 2_000_000, headers=auth(clinician)
    )
    _outcome(big, 413)
