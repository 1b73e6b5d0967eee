"""Nightscout API v1 treatments (`POST`, `GET`, `PUT` and `DELETE /api/v1/treatments`) and
profiles (`POST` and `GET /api/v1/profile`).

Treatments (carbs, insulin, basal, notes, exercise, site changes) are stored per patient in
PostgreSQL by the API itself, not through Kafka: they are never input to the alert rules, so
nothing downstream waits for them, and the app gets the stored `_id`s in the answer, which
Loop and Trio keep to update or delete them later. A document that is no treatment becomes a
dead letter (through Kafka, as refused entries do) and is answered marked, never dropped.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

from fastapi import APIRouter, HTTPException, Request

from dashboard_api.deps import ConnDep
from dashboard_api.nightscout_auth import UploaderActor, UploaderDep
from dashboard_api.nightscout_query import count_param, find_filters, parse_time
from dashboard_api.problems import documented
from dashboard_api.routes.nightscout_upload import _documents, _raw, _Upload
from telehealth.bounds import escape_unstorable
from telehealth.storage import nightscout_documents as documents
from telehealth.storage import treatments as store
from telehealth.treatments import (
    IDENTIFIER_FIELDS,
    Treatment,
    TreatmentProblem,
    check_document,
    document_identifier,
    to_treatment,
)

router = APIRouter(prefix="/api/v1", tags=["nightscout"])

SOURCE = "nightscout:/api/v1/treatments"
_OPERATORS = frozenset({"gte", "gt", "lte", "lt", "eq", "ne", "exists"})
_TIME_OPS = {"gte": "since", "gt": "after", "lte": "until", "lt": "before"}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: documented("an unsupported filter, or a body that is not JSON objects"),
    401: documented("no credential, or an unknown or revoked one"),
    429: documented("too many requests or failed attempts"),
    503: documented("a refused treatment could not be dead-lettered: Kafka is away; upload again"),
}


def parse_query(request: Request) -> store.TreatmentQuery:
    """`count` and `find[...]` filters: a time range on `created_at`, and equal, not equal
    (`$ne`, as Trio sends) and `$exists` on any field. Other parameters are ignored; other
    filter operators are refused rather than dropped."""
    q = store.TreatmentQuery()
    for key, name, op, value in find_filters(request, _OPERATORS):
        if name == "created_at" and op in _TIME_OPS:
            setattr(q, _TIME_OPS[op], parse_time(value, key))
        elif op in (None, "eq"):
            q.equal.append((name, value))
        elif op == "ne":
            q.not_equal.append((name, value))
        elif op == "exists":
            q.exists.append((name, value.strip().lower() not in ("false", "0")))
        else:
            raise HTTPException(400, f"filter {key[:60]!r} is not supported (time ranges on created_at only)")
    q.count = count_param(request, 100)
    return q


async def _known_as(
    conn: ConnDep, uploader: UploaderActor, item: dict[str, Any], treatment: Treatment
) -> Treatment:
    """The treatment under the identifier it is stored with, if the client names a stored one
    by any of its identifiers (Loop sends back the `_id` it was answered)."""
    for name in IDENTIFIER_FIELDS:
        value = item.get(name)
        if isinstance(value, str) and value:
            found = await store.find_identifier(conn, uploader.patient_id, value)
            if found is not None:
                return dataclasses.replace(treatment, identifier=found)
    return treatment


async def _store_all(
    request: Request, conn: ConnDep, uploader: UploaderActor, replace: bool
) -> list[dict[str, Any]]:
    items = await _documents(request)
    upload = _Upload(request.app.state.settings, uploader)
    answers: list[dict[str, Any]] = []
    for item in items:
        try:
            treatment = to_treatment(item, upload.now)
        except TreatmentProblem as problem:
            raw = _raw(item)
            upload.letter(SOURCE, problem.reason, problem.detail, raw)
            answers.append(
                {
                    "_id": hashlib.sha1(raw).hexdigest()[:24],
                    "stored": False,
                    "dead_letter": problem.reason.value,
                    "detail": escape_unstorable(problem.detail, 500),
                }
            )
            continue
        treatment = await _known_as(conn, uploader, item, treatment)
        stored = None
        if replace:
            stored = await store.update(conn, uploader.patient_id, uploader.device_id, treatment)
        if stored is None:
            stored = await store.store(conn, uploader.patient_id, uploader.device_id, treatment)
        answers.append(stored.document)
    await conn.commit()  # stored before answered: the app forgets what it was told is stored
    if upload.records:
        await upload.send(request.app.state.intake, request.app.state.pool)
    return answers


@router.post("/treatments", responses=_RESPONSES)
@router.post("/treatments.json", responses=_RESPONSES, include_in_schema=False)
async def post_treatments(request: Request, conn: ConnDep, uploader: UploaderDep) -> list[dict[str, Any]]:
    """Treatments, one object or an array; answers one element per document sent, in order:
    the stored treatment with its `_id`, or the refused one marked `stored: false`. A
    treatment already stored under its identifier is answered as stored, not stored again."""
    return await _store_all(request, conn, uploader, replace=False)


@router.put("/treatments", responses=_RESPONSES)
@router.put("/treatments.json", responses=_RESPONSES, include_in_schema=False)
async def put_treatments(request: Request, conn: ConnDep, uploader: UploaderDep) -> list[dict[str, Any]]:
    """Replace treatments named by their identifier or `_id` (stored if new), as Loop edits."""
    return await _store_all(request, conn, uploader, replace=True)


@router.get("/treatments", responses=_RESPONSES)
@router.get("/treatments.json", responses=_RESPONSES, include_in_schema=False)
async def get_treatments(request: Request, conn: ConnDep, uploader: UploaderDep) -> list[dict[str, Any]]:
    """The patient's treatments, newest first: `count` (100), `find[created_at][$gte]=`,
    `find[eventType]=`, `find[enteredBy][$ne]=`, `find[carbs][$exists]=true`, ..."""
    query = parse_query(request)
    found = await store.query(conn, uploader.patient_id, query)
    await uploader.audit(conn, "nightscout.treatments.read", count=len(found))
    return found


@router.delete("/treatments", responses=_RESPONSES)
@router.delete("/treatments.json", responses=_RESPONSES, include_in_schema=False)
async def delete_treatments(request: Request, conn: ConnDep, uploader: UploaderDep) -> dict[str, Any]:
    """Delete the treatments the `find[...]` filters select (as Trio deletes carbs), at most
    `count` (100); kept as deleted. Without a filter nothing is deleted: `400`."""
    if not any(key.startswith("find[") for key in request.query_params):
        raise HTTPException(400, "name the treatments to delete with find[...] filters")
    query = parse_query(request)
    found = await store.query(conn, uploader.patient_id, query)
    deleted = await store.delete(conn, uploader.patient_id, [t["identifier"] for t in found])
    return {"n": deleted, "ok": 1}


@router.delete("/treatments/{treatment_id}", responses=_RESPONSES | {404: documented("no such treatment")})
async def delete_treatment(treatment_id: str, conn: ConnDep, uploader: UploaderDep) -> dict[str, Any]:
    """Delete one treatment by the `_id` it was served (or its identifier); kept as deleted."""
    identifier = await store.find_identifier(conn, uploader.patient_id, treatment_id)
    if identifier is None:
        raise HTTPException(404, "no such treatment")
    deleted = await store.delete(conn, uploader.patient_id, [identifier])
    return {"n": deleted, "ok": 1}


@router.post("/profile", responses=_RESPONSES)
@router.post("/profile.json", responses=_RESPONSES, include_in_schema=False)
async def post_profile(request: Request, conn: ConnDep, uploader: UploaderDep) -> list[dict[str, Any]]:
    """Therapy profiles (basal rates, ratios, targets) as Loop and Trio upload them: kept as
    uploaded, by identifier or digest; answered one element per document, in order."""
    items = await _documents(request)
    upload = _Upload(request.app.state.settings, uploader)
    answers: list[dict[str, Any]] = []
    for item in items:
        try:
            at = check_document(item, upload.now)
        except TreatmentProblem as problem:
            raw = _raw(item)
            upload.letter("nightscout:/api/v1/profile", problem.reason, problem.detail, raw)
            answers.append(
                {
                    "_id": hashlib.sha1(raw).hexdigest()[:24],
                    "stored": False,
                    "dead_letter": problem.reason.value,
                    "detail": escape_unstorable(problem.detail, 500),
                }
            )
            continue
        kept = await documents.store(
            conn, uploader.patient_id, uploader.device_id, "profile", document_identifier(item), at, item
        )
        answers.append(kept.document)
    await conn.commit()
    if upload.records:
        await upload.send(request.app.state.intake, request.app.state.pool)
    return answers


@router.get("/profile", responses=_RESPONSES)
@router.get("/profile.json", responses=_RESPONSES, include_in_schema=False)
async def get_profiles(request: Request, conn: ConnDep, uploader: UploaderDep) -> list[dict[str, Any]]:
    """The patient's profiles, newest first: `count` (10)."""
    count = count_param(request, 10)
    found = await documents.search(conn, uploader.patient_id, "profile", limit=count)
    await uploader.audit(conn, "nightscout.profile.read", count=len(found))
    return found
