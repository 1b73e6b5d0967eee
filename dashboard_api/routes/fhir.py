"""The read-only FHIR R4 endpoint under /fhir, scoped like the JSON API (docs/fhir.md).

Who may read what is decided exactly as for the JSON API (`authorize_patient`: clinicians of
the patient's care team, or the patient themself; another team's patient is a 404 like a
missing one, and audited as refused); every read is audited with a `fhir.*` action. Shapes
come from telehealth.fhir; errors are OperationOutcomes (dashboard_api.problems).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from importlib.metadata import version
from typing import Annotated, Any, Literal
from urllib.parse import urlencode
from uuid import UUID
from zoneinfo import ZoneInfo

import psycopg
from fastapi import APIRouter, HTTPException, Query, Request, Response
from pydantic_core import to_json

from dashboard_api.auditing import Audit
from dashboard_api.deps import ConnDep, CurrentUser, SettingsDep
from dashboard_api.routes.access import authorize_patient
from dashboard_api.routes.consent import authorize as authorize_consent
from telehealth.consent import in_force
from telehealth.consent_fhir import to_fhir
from telehealth.fhir import cgm, resources, search
from telehealth.fhir.base import FHIR_JSON, check_bundle_envelope, instant, searchset
from telehealth.fhir.capability import DEFAULT_COUNT, MAX_COUNT, capability_statement
from telehealth.storage import consent as consent_store
from telehealth.storage import fhir_reads
from telehealth.storage.glucose import glucose_summary, local_days
from telehealth.storage.people import patient_time_zone


class FhirJSON(Response):
    media_type = FHIR_JSON


def _documented(description: str) -> dict[str, Any]:
    schema = {"type": "object", "description": "a FHIR R4 OperationOutcome"}
    return {"description": description, "content": {FHIR_JSON: {"schema": schema}}}


#: the answers of every FHIR route, for the OpenAPI schema (all OperationOutcomes)
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "a FHIR R4 resource, or a Bundle of them",
        "content": {FHIR_JSON: {"schema": {"type": "object", "description": "a FHIR R4 resource"}}},
    },
    400: _documented("a parameter is invalid, unknown or missing"),
    401: _documented("no bearer token, or it is unknown, expired or revoked"),
    403: _documented("your role may not read patient records"),
    404: _documented("not found, or not in your care (the two are answered alike)"),
    413: _documented("the request body is too large"),
}
router = APIRouter(prefix="/fhir", tags=["fhir"], default_response_class=FhirJSON, responses=RESPONSES)

# Declared for the OpenAPI schema; the values are read from the query itself (`_params`), which
# keeps repeated parameters and refuses unknown ones.
Patient = Annotated[str | None, Query(description="the patient's id, or Patient/<id>")]
Subject = Annotated[str | None, Query(description="same as patient")]

#: the longest period a CGM summary or bundle covers (as the dashboard's summary)
MAX_DAYS = 90


def fhir_response(resource: dict[str, Any]) -> Response:
    return FhirJSON(to_json(resource))


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/fhir"


def _params(request: Request, allowed: set[str]) -> dict[str, list[str]]:
    """The query's parameters by name; an unknown one is refused, never silently ignored (a
    client that thinks it filtered must not get more than it asked for)."""
    found: dict[str, list[str]] = {}
    for name, value in request.query_params.multi_items():
        if name not in allowed:
            raise HTTPException(400, f"search parameter {name!r} is not supported; see /fhir/metadata")
        found.setdefault(name, []).append(value)
    return found


def _one(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    if values and len(values) > 1:
        raise HTTPException(400, f"{name} may be given once")
    return values[0] if values else None


def _bad(exc: search.SearchError) -> HTTPException:
    return HTTPException(400, str(exc))


@router.get("/metadata")
async def metadata(request: Request) -> Response:
    """The CapabilityStatement (no token needed: it holds no patient data)."""
    return fhir_response(capability_statement(_base(request), version("telehealth-stream")))


@router.get("/Patient/{patient_id}")
async def read_patient(patient_id: UUID, conn: ConnDep, user: CurrentUser, audit: Audit) -> Response:
    await authorize_patient(conn, user, patient_id)
    await audit("fhir.patient.read", patient_id)
    row = await fhir_reads.patient_row(conn, patient_id)
    if row is None:
        raise HTTPException(404, f"no patient {patient_id} in your care")
    return fhir_response(resources.patient(row))


def _patient_param(params: dict[str, list[str]]) -> UUID:
    patient = _one(params, "patient")
    subject = _one(params, "subject")
    if patient is None and subject is None:
        raise HTTPException(400, "patient (or subject) is required: searches are per patient")
    try:
        ids = {search.parse_patient(v) for v in (patient, subject) if v is not None}
    except search.SearchError as exc:
        raise _bad(exc) from exc
    if len(ids) > 1:
        raise HTTPException(400, "patient and subject name different patients")
    return ids.pop()


_OBSERVATION_PARAMS = {"patient", "subject", "code", "date", "_lastUpdated", "_count", "_cursor", "_format"}


@router.get("/Observation")
async def search_observations(
    request: Request,
    conn: ConnDep,
    user: CurrentUser,
    audit: Audit,
    patient: Patient = None,
    subject: Subject = None,
    code: Annotated[str | None, Query(description="LOINC or urn:telehealth:code tokens, comma = or")] = None,
    date: Annotated[list[str] | None, Query(description="e.g. ge2026-12-01; repeat to AND")] = None,
    last_updated: Annotated[
        list[str] | None, Query(alias="_lastUpdated", description="when stored, e.g. gt2026-12-07T08:00:00Z")
    ] = None,
    count: Annotated[int | None, Query(alias="_count", ge=1, le=MAX_COUNT)] = None,
    cursor: Annotated[str | None, Query(alias="_cursor", description="from a next link")] = None,
) -> Response:
    """Readings of one patient, oldest first, a page at a time (`next` link)."""
    params = _params(request, _OBSERVATION_PARAMS)
    patient_id = _patient_param(params)
    await authorize_patient(conn, user, patient_id)
    query = fhir_reads.ReadingQuery(patient_id=patient_id)
    measured, stored = search.TimeRange(), search.TimeRange()
    try:
        for text in params.get("date", []):
            search.parse_date(text, measured)
        for text in params.get("_lastUpdated", []):
            search.parse_date(text, stored, "_lastUpdated")
        code = _one(params, "code")
        if code is not None:
            wanted = search.parse_code(code)
            query.codes, query.loincs = wanted.codes, wanted.loincs
        count = search.parse_count(_one(params, "_count"), default=DEFAULT_COUNT, maximum=MAX_COUNT)
        cursor = _one(params, "_cursor")
        query.after = search.decode_cursor(cursor) if cursor else None
    except search.SearchError as exc:
        raise _bad(exc) from exc
    query.measured_from, query.measured_before = measured.lower, measured.upper
    query.stored_from, query.stored_before = stored.lower, stored.upper
    query.limit = count + 1  # one more tells whether there is a next page
    await audit(
        "fhir.observations.read",
        patient_id,
        code=code,
        start=measured.lower.isoformat() if measured.lower else None,
        end=measured.upper.isoformat() if measured.upper else None,
        cursor=cursor is not None,
    )
    rows = await fhir_reads.search_readings(conn, query)
    more = len(rows) > count
    rows = rows[:count]
    observations = [resources.observation(r) for r in rows]
    resources.check_observations(observations)
    next_url = None
    if more:
        kept = [(k, v) for k, v in request.query_params.multi_items() if k != "_cursor"]
        kept.append(("_cursor", search.encode_cursor(rows[-1])))
        next_url = f"{_base(request)}/Observation?{urlencode(kept)}"
    # Observations are not served by id (their ids are stable but derived), so urn:uuid fullUrls
    bundle = searchset(
        [(f"urn:uuid:{o['id']}", o) for o in observations],
        self_url=str(request.url),
        next_url=next_url,
        now=datetime.now(UTC),
    )
    check_bundle_envelope(bundle)
    return fhir_response(bundle)


# ---- Device ---------------------------------------------------------------------------------


@router.get("/Device/{device_id}")
async def read_device(device_id: str, conn: ConnDep, user: CurrentUser, audit: Audit) -> Response:
    """A device by its FHIR id (its own id, unless that has a `_`: then search by patient)."""
    row = await fhir_reads.device_row(conn, device_id)
    if row is None:
        raise HTTPException(404, f"no device {device_id!r} in your care")
    try:
        await authorize_patient(conn, user, row["patient_id"])
    except HTTPException as exc:
        if exc.status_code == 404:  # never name the patient a device belongs to
            raise HTTPException(404, f"no device {device_id!r} in your care") from exc
        raise
    await audit("fhir.devices.read", row["patient_id"], device_id=device_id)
    return fhir_response(resources.device(row))


@router.get("/Device")
async def search_devices(
    request: Request, conn: ConnDep, user: CurrentUser, audit: Audit, patient: Patient = None
) -> Response:
    """The patient's devices, revoked ones included (status `inactive`)."""
    params = _params(request, {"patient", "_format"})
    patient_id = _patient_param(params)
    await authorize_patient(conn, user, patient_id)
    await audit("fhir.devices.read", patient_id)
    rows = await fhir_reads.devices_of(conn, patient_id)
    base = _base(request)
    found = [resources.device(r) for r in rows]
    bundle = searchset(
        [(f"{base}/Device/{d['id']}", d) for d in found],
        self_url=str(request.url),
        next_url=None,
        now=datetime.now(UTC),
    )
    check_bundle_envelope(bundle)
    return fhir_response(bundle)


# ---- Consent --------------------------------------------------------------------------------


@router.get("/Consent")
async def search_consent(
    request: Request, conn: ConnDep, user: CurrentUser, audit: Audit, patient: Patient = None
) -> Response:
    """Every consent version of the patient, the one in force `active` (as /api/v1/.../consent
    serves them with ?format=fhir); readable by the patient, an admin or the care team."""
    params = _params(request, {"patient", "_format"})
    patient_id = _patient_param(params)
    await authorize_consent(conn, user, patient_id, clinician_reads=True)
    await audit("consent.read", patient_id, via="fhir")
    versions = await consent_store.history(conn, patient_id)
    current = in_force(versions, datetime.now(UTC))
    entries = [
        (f"urn:telehealth:consent:{patient_id}:{v.version}", to_fhir(patient_id, v, active=v is current))
        for v in versions
    ]
    bundle = searchset(entries, self_url=str(request.url), next_url=None, now=datetime.now(UTC))
    check_bundle_envelope(bundle)
    return fhir_response(bundle)


# ---- the HL7 CGM IG operations ----------------------------------------------------------------


async def _period(
    conn: ConnDep,
    settings: SettingsDep,
    patient_id: UUID,
    days: int | None,
    start: date | None,
    end: date | None,
) -> tuple[cgm.Period, datetime, datetime, str]:
    """The period asked for as the patient's calendar days, and its [from, to) moments.

    `days=N` is the dashboard's period (the last N days, today included); `start` and `end`
    name the days themselves (an `end` of today or later stops at now)."""
    zone = await patient_time_zone(conn, patient_id) or settings.patient_time_zone
    now = datetime.now(UTC)
    today = now.astimezone(ZoneInfo(zone)).date()
    if start is None and end is None:
        n = days or 14
        dates, moment_from = local_days(now, n, zone)
        return cgm.Period(patient_id, dates[0], dates[-1], now), moment_from, now, zone
    if days is not None or start is None:
        raise HTTPException(400, "give either days, or start (and optionally end) dates")
    last = min(end or today, today)
    if last < start:
        raise HTTPException(400, "end is before start (or start is in the future)")
    if (last - start).days + 1 > MAX_DAYS:
        raise HTTPException(400, f"a period covers at most {MAX_DAYS} days")
    tz = ZoneInfo(zone)
    moment_from = datetime.combine(start, time(0), tzinfo=tz)
    moment_to = now if last == today else datetime.combine(last + timedelta(days=1), time(0), tzinfo=tz)
    return cgm.Period(patient_id, start, last, now), moment_from, moment_to, zone


Days = Annotated[
    int | None, Query(ge=1, le=MAX_DAYS, description="the last N calendar days, today included (default 14)")
]
Day = Annotated[date | None, Query(description="first (start) or last (end) calendar day, YYYY-MM-DD")]


async def _summary(
    conn: ConnDep, period: cgm.Period, moment_from: datetime, moment_to: datetime, zone: str
) -> dict[str, Any]:
    try:
        return await glucose_summary(conn, period.patient_id, moment_from, moment_to, tz=zone)
    except psycopg.errors.InvalidParameterValue as exc:
        raise HTTPException(422, f"time zone {zone!r} is unknown to the database") from exc


@router.get("/Patient/{patient_id}/$cgm-summary")
async def cgm_summary(
    patient_id: UUID,
    conn: ConnDep,
    user: CurrentUser,
    audit: Audit,
    settings: SettingsDep,
    days: Days = None,
    start: Day = None,
    end: Day = None,
) -> Response:
    """The CGM summary Observation and its members (HL7 CGM IG), as a `collection` Bundle;
    the values are the dashboard's glucose summary for the same days."""
    await authorize_patient(conn, user, patient_id)
    period, moment_from, moment_to, zone = await _period(conn, settings, patient_id, days, start, end)
    await audit("fhir.cgm_summary.read", patient_id, first=str(period.first), last=str(period.last))
    summary = await _summary(conn, period, moment_from, moment_to, zone)
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": instant(period.computed_at),
        "entry": [{"fullUrl": url, "resource": r} for url, r in cgm.summary_members(summary, period)],
    }
    check_bundle_envelope(bundle)
    return fhir_response(bundle)


@router.get("/Patient/{patient_id}/$cgm-bundle")
async def cgm_bundle(
    patient_id: UUID,
    conn: ConnDep,
    user: CurrentUser,
    audit: Audit,
    settings: SettingsDep,
    days: Days = None,
    start: Day = None,
    end: Day = None,
    readings: Annotated[bool, Query(description="include the CGM sensor readings")] = True,
    unit: Annotated[
        Literal["mmol/L", "mg/dL"], Query(description="the readings' unit (the IG's molar or mass profile)")
    ] = "mmol/L",
) -> Response:
    """A `transaction` Bundle shaped as the IG's `$submit-cgm-bundle` input: the patient, their
    CGM devices, the summary with its members and (unless readings=false) the sensor readings."""
    await authorize_patient(conn, user, patient_id)
    period, moment_from, moment_to, zone = await _period(conn, settings, patient_id, days, start, end)
    await audit(
        "fhir.cgm_bundle.read", patient_id, first=str(period.first), last=str(period.last), readings=readings
    )
    row = await fhir_reads.patient_row(conn, patient_id)
    if row is None:
        raise HTTPException(404, f"no patient {patient_id} in your care")
    summary = await _summary(conn, period, moment_from, moment_to, zone)
    sensor = await fhir_reads.cgm_readings(conn, patient_id, moment_from, moment_to) if readings else []
    devices = await fhir_reads.devices_of(conn, patient_id, cgm_or=sorted({r["device_id"] for r in sensor}))
    bundle = cgm.submission_bundle(
        resources.patient(row),
        [resources.device(d) for d in devices],
        summary,
        period,
        sensor,
        mass_units=unit == "mg/dL",
    )
    return fhir_response(bundle)
