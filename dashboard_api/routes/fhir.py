"""The read-only FHIR R4 endpoint under /fhir, scoped like the JSON API (docs/fhir.md).

Who may read what is decided exactly as for the JSON API (`authorize_patient`: clinicians of
the patient's care team, or the patient themself; another team's patient is a 404 like a
missing one, and audited as refused); every read is audited with a `fhir.*` action. Shapes
come from telehealth.fhir; errors are OperationOutcomes (dashboard_api.problems).
"""

from __future__ import annotations

from datetime import UTC, datetime
from importlib.metadata import version
from typing import Annotated, Any
from urllib.parse import urlencode
from uuid import UUID

import psycopg
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic_core import to_json

from dashboard_api.auditing import Audit
from dashboard_api.deps import ConnDep, CurrentUser
from dashboard_api.routes.access import PATIENT_READERS, authorize_patient
from dashboard_api.routes.consent import authorize as authorize_consent
from dashboard_api.routes.fhir_scope import PathPatientScope, PatientScope, Scope, checked_params, one
from telehealth.consent import in_force
from telehealth.consent_fhir import to_fhir
from telehealth.fhir import alerts, resources, search
from telehealth.fhir.base import FHIR_JSON, NHS_NUMBER, PATIENT_ID_SYSTEM, check_bundle_envelope, searchset
from telehealth.fhir.capability import DEFAULT_COUNT, MAX_COUNT, capability_statement
from telehealth.storage import consent as consent_store
from telehealth.storage import fhir_reads
from telehealth.storage.people import User


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

# Declared for the OpenAPI schema; the values are read from the query itself (`checked_params`), which
# keeps repeated parameters and refuses unknown ones.
Patient = Annotated[str | None, Query(description="the patient's id, or Patient/<id>")]
Subject = Annotated[str | None, Query(description="same as patient")]


def fhir_response(resource: dict[str, Any]) -> Response:
    return FhirJSON(to_json(resource))


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/fhir"


def _bad(exc: search.SearchError) -> HTTPException:
    return HTTPException(400, str(exc))


async def _consent_readers(conn: psycopg.AsyncConnection[Any], user: User, patient_id: UUID) -> None:
    await authorize_consent(conn, user, patient_id, clinician_reads=True)


@router.get("/metadata")
async def metadata(request: Request) -> Response:
    """The CapabilityStatement (no token needed: it holds no patient data)."""
    return fhir_response(capability_statement(_base(request), version("telehealth-stream")))


@router.get("/Patient/{patient_id}")
async def read_patient(
    patient_id: UUID,
    conn: ConnDep,
    _: Annotated[Scope, Depends(PathPatientScope(None, action="fhir.patient.read"))],
) -> Response:
    row = await fhir_reads.patient_row(conn, patient_id)
    if row is None:
        raise HTTPException(404, f"no patient {patient_id} in your care")
    return fhir_response(resources.patient(row))


@router.get("/Patient")
async def search_patients(
    request: Request,
    conn: ConnDep,
    user: CurrentUser,
    audit: Audit,
    identifier: Annotated[
        str | None,
        Query(description="https://fhir.nhs.uk/Id/nhs-number|<number>, or urn:telehealth:patient|<id>"),
    ] = None,
) -> Response:
    """Find a patient by NHS number (or our id), as a clinical system maps its record to ours.
    Only patients in the caller's care are found; a match outside it is left out and audited
    as a refused access, as a read would be."""
    params = checked_params(request, {"identifier", "_format"})
    text = one(params, "identifier")
    if text is None:
        raise HTTPException(400, "identifier is required: this is a lookup, not a listing")
    if user.role not in PATIENT_READERS:
        raise HTTPException(403, f"the {user.role} role may not read or change patient records")
    system, _, value = text.rpartition("|")
    if system not in ("", NHS_NUMBER, PATIENT_ID_SYSTEM):
        raise HTTPException(400, f"identifier system {system!r} is not served; use {NHS_NUMBER}")
    try:
        as_id = UUID(value) if system in ("", PATIENT_ID_SYSTEM) else None
    except ValueError:
        as_id = None
    nhs = value if system in ("", NHS_NUMBER) else None
    found = await fhir_reads.patients_by_identifier(conn, nhs_number=nhs, patient_id=as_id)
    shown = []
    for row in found:
        mine = (user.role == "clinician" and row["care_team"] in user.care_teams) or (
            user.role == "patient" and user.patient_id == row["id"]
        )
        await audit("fhir.patient.read" if mine else "access.denied", row["id"], via="identifier")
        if mine:
            shown.append(resources.patient(row))
    base = _base(request)
    bundle = searchset(
        [(f"{base}/Patient/{p['id']}", p) for p in shown],
        self_url=str(request.url),
        next_url=None,
        now=datetime.now(UTC),
    )
    check_bundle_envelope(bundle)
    return fhir_response(bundle)


_OBSERVATION_PARAMS = {"patient", "subject", "code", "date", "_lastUpdated", "_count", "_cursor", "_format"}


@router.get("/Observation")
async def search_observations(
    request: Request,
    conn: ConnDep,
    scope: Annotated[Scope, Depends(PatientScope(_OBSERVATION_PARAMS))],
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
    params, patient_id = scope.params, scope.patient_id
    query = fhir_reads.ReadingQuery(patient_id=patient_id)
    measured, stored = search.TimeRange(), search.TimeRange()
    try:
        for text in params.get("date", []):
            search.parse_date(text, measured)
        for text in params.get("_lastUpdated", []):
            search.parse_date(text, stored, "_lastUpdated")
        code = one(params, "code")
        if code is not None:
            wanted = search.parse_code(code)
            query.codes, query.loincs = wanted.codes, wanted.loincs
        count = search.parse_count(one(params, "_count"), default=DEFAULT_COUNT, maximum=MAX_COUNT)
        cursor = one(params, "_cursor")
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
    if user.role not in PATIENT_READERS:  # before the lookup: the answer says nothing of the id
        raise HTTPException(403, f"the {user.role} role may not read or change patient records")
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
    request: Request,
    conn: ConnDep,
    scope: Annotated[Scope, Depends(PatientScope({"patient", "_format"}, action="fhir.devices.read"))],
    patient: Patient = None,
) -> Response:
    """The patient's devices, revoked ones included (status `inactive`)."""
    rows = await fhir_reads.devices_of(conn, scope.patient_id)
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


# ---- Flag (alerts) ---------------------------------------------------------------------------


_FLAG_PARAMS = {"patient", "subject", "status", "_count", "_cursor", "_format"}


@router.get("/Flag")
async def search_flags(
    request: Request,
    conn: ConnDep,
    scope: Annotated[Scope, Depends(PatientScope(_FLAG_PARAMS, roles=("clinician",)))],
    audit: Audit,
    patient: Patient = None,
    subject: Subject = None,
    status: Annotated[str | None, Query(description="active (open or acknowledged) or inactive")] = None,
    count: Annotated[int | None, Query(alias="_count", ge=1, le=MAX_COUNT)] = None,
    cursor: Annotated[str | None, Query(alias="_cursor", description="from a next link")] = None,
) -> Response:
    """The patient's alerts as Flags, newest first (clinicians of the care team, as the alert
    inbox: patients do not read alerts in the JSON API either)."""
    params, patient_id = scope.params, scope.patient_id
    wanted = one(params, "status")
    if wanted not in (None, "active", "inactive"):
        raise HTTPException(400, "status is active or inactive")
    try:
        size = search.parse_count(one(params, "_count"), default=DEFAULT_COUNT, maximum=MAX_COUNT)
    except search.SearchError as exc:
        raise _bad(exc) from exc
    after = one(params, "_cursor")
    if after is not None and not after.isdigit():
        raise HTTPException(400, "_cursor is not one this server issued; follow the `next` link as given")
    await audit("fhir.alerts.read", patient_id, status=wanted, cursor=after is not None)
    rows = await fhir_reads.alerts_of(
        conn,
        patient_id,
        active=None if wanted is None else wanted == "active",
        before_id=int(after) if after else None,
        limit=size + 1,
    )
    next_url = None
    if len(rows) > size:
        rows = rows[:size]
        kept = [(k, v) for k, v in request.query_params.multi_items() if k != "_cursor"]
        next_url = f"{_base(request)}/Flag?{urlencode([*kept, ('_cursor', str(rows[-1]['id']))])}"
    flags = [alerts.flag(r) for r in rows]
    bundle = searchset(
        [(f"urn:telehealth:alert:{f['identifier'][0]['value']}", f) for f in flags],
        self_url=str(request.url),
        next_url=next_url,
        now=datetime.now(UTC),
    )
    check_bundle_envelope(bundle)
    return fhir_response(bundle)


# ---- Consent --------------------------------------------------------------------------------


@router.get("/Consent")
async def search_consent(
    request: Request,
    conn: ConnDep,
    scope: Annotated[
        Scope,
        Depends(
            PatientScope(
                {"patient", "_format"}, action="consent.read", authorize=_consent_readers, via="fhir"
            )
        ),
    ],
    patient: Patient = None,
) -> Response:
    """Every consent version of the patient, the one in force `active` (as /api/v1/.../consent
    serves them with ?format=fhir); readable by the patient, an admin or the care team."""
    patient_id = scope.patient_id
    versions = await consent_store.history(conn, patient_id)
    current = in_force(versions, datetime.now(UTC))
    entries = [
        (f"urn:telehealth:consent:{patient_id}:{v.version}", to_fhir(patient_id, v, active=v is current))
        for v in versions
    ]
    bundle = searchset(entries, self_url=str(request.url), next_url=None, now=datetime.now(UTC))
    check_bundle_envelope(bundle)
    return fhir_response(bundle)
