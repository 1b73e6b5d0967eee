"""Nightscout API v3, the part AndroidAPS's NSClientV3 uses, and the token exchange before it.

`GET /api/v2/authorization/request/<access token>` answers a session token (8 h) that the app
then sends as `Authorization: Bearer`. Collections: `entries` (through the same checks and
Kafka topic as v1 uploads), `treatments` (the v1 table), and `devicestatus`, `profile`,
`food`, `settings` (kept as uploaded). For each: create, read by identifier, search, `history`
(changes after a server time, deletions included, ETag `W/"<ms>"`), `PATCH` and `DELETE`
(treatments and the kept documents; entries are readings and are not edited). Answers are
v3's envelope `{"status", "result"}`; creates also carry `identifier`, `isDeduplication` and
`lastModified` at the top, where AndroidAPS reads them.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import JSONResponse

from dashboard_api.deps import ConnDep, SettingsDep
from dashboard_api.nightscout_auth import UploaderActor, UploaderDep, authenticate
from dashboard_api.nightscout_v3_query import limit_param, search_params, v3_time
from dashboard_api.problems import documented
from dashboard_api.routes.nightscout_read import NIGHTSCOUT_VERSION
from dashboard_api.routes.nightscout_treatments import _known_as
from dashboard_api.routes.nightscout_upload import _documents, _raw, _Upload, store_devicestatus
from telehealth.nightscout import EntryProblem, ms_of, to_reading
from telehealth.storage import nightscout_documents as documents
from telehealth.storage import treatments as treatment_store
from telehealth.storage import uploaders
from telehealth.storage.nightscout_reads import (
    EntryQuery,
    entries,
    entries_last_stored,
    entries_stored_since,
    is_stored,
)
from telehealth.treatments import TreatmentProblem, check_document, document_identifier, to_treatment

router = APIRouter(tags=["nightscout"])

_AUTH: dict[int | str, dict[str, Any]] = {
    401: documented("no credential, or an unknown, expired or revoked one"),
    429: documented("too many requests or failed attempts"),
}
_RESPONSES = _AUTH | {
    400: documented("a refused document (kept as a dead letter), or an unsupported filter"),
    404: documented("a collection not served, or no such document"),
    503: documented("Kafka is not configured or did not take the upload; upload again"),
}

API_VERSION = "3.0.4"
COLLECTIONS = ("entries", "treatments", "devicestatus", "profile", "food", "settings")


def _ok(result: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"status": status, "result": result}, status_code=status, headers=headers)


def _collection(name: str) -> str:
    if name not in COLLECTIONS:
        raise HTTPException(404, f"collection {name[:40]!r} is not served ({', '.join(COLLECTIONS)})")
    return name


def _created(identifier: str, created: bool, last_modified: datetime) -> JSONResponse:
    body: dict[str, Any] = {
        "identifier": identifier,
        "isDeduplication": not created,
        "lastModified": ms_of(last_modified),
    }
    if not created:
        body["deduplicatedIdentifier"] = identifier
    status = 201 if created else 200
    return JSONResponse({"status": status, **body, "result": body}, status_code=status)


async def _body(request: Request) -> dict[str, Any]:
    items = await _documents(request)
    if len(items) != 1:
        raise HTTPException(400, "API v3 takes one document per request")
    document: dict[str, Any] = items[0]
    return document


@router.get("/api/v2/authorization/request/{access_token}", responses=_AUTH)
async def authorization_request(
    access_token: str, request: Request, conn: ConnDep, settings: SettingsDep
) -> dict[str, Any]:
    """Nightscout's exchange of an access token for the bearer token API v3 clients send."""
    uploader = await authenticate(request, conn, settings, None, uploaders.token_digest(access_token))
    token, issued, expires = await uploaders.open_session(conn, uploader.device_id)
    await conn.commit()
    return {
        "token": token,
        "sub": uploader.device_id,
        "permissionGroups": [["api:*:create,read,update,delete"]],
        "iat": int(issued.timestamp()),
        "exp": int(expires.timestamp()),
    }


def _version() -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "version": NIGHTSCOUT_VERSION,
        "apiVersion": API_VERSION,
        "srvDate": ms_of(now),
        "storage": {"storage": "postgresql", "version": "telehealth-stream"},
    }


@router.get("/api/v3/version")
async def version() -> JSONResponse:
    """Public, as in Nightscout: which server and API version answer."""
    return _ok(_version())


@router.get("/api/v3/status", responses=_AUTH)
async def status(conn: ConnDep, uploader: UploaderDep) -> JSONResponse:
    """The version and what this credential may do: create, read, update, delete in every
    collection AndroidAPS syncs, for its one patient."""
    await uploader.audit(conn, "nightscout.status.read")
    return _ok(_version() | {"apiPermissions": dict.fromkeys(COLLECTIONS, "crud")})


@router.get("/api/v3/lastModified", responses=_AUTH)
async def last_modified(conn: ConnDep, uploader: UploaderDep) -> JSONResponse:
    """When each collection last changed for this patient (ms; 0: never)."""
    collections = dict.fromkeys(COLLECTIONS, 0)
    stored = await entries_last_stored(conn, uploader.patient_id)
    if stored is not None:
        collections["entries"] = ms_of(stored)
    changed = await treatment_store.last_modified(conn, uploader.patient_id)
    if changed is not None:
        collections["treatments"] = ms_of(changed)
    for name, at in (await documents.last_modified(conn, uploader.patient_id)).items():
        collections[name] = ms_of(at)
    return _ok({"srvDate": ms_of(datetime.now(UTC)), "collections": collections})


async def _create_entry(
    request: Request, uploader: UploaderActor, conn: ConnDep, item: dict[str, Any]
) -> JSONResponse:
    try:
        seq: int | None = to_reading(item, uploader.device_id)["seq"]
    except EntryProblem:
        seq = None  # refused below, with the reason
    existed = seq is not None and await is_stored(conn, uploader.device_id, seq)
    upload = _Upload(request.app.state.settings, uploader)
    answer = upload.entry(item)
    await upload.send(request.app.state.intake, request.app.state.pool)
    if answer.get("stored") is False:
        raise HTTPException(400, f"{answer['dead_letter']}: {answer['detail']} (kept as a dead letter)")
    return _created(answer["_id"], not existed, upload.now)


async def _create_treatment(
    request: Request, uploader: UploaderActor, conn: ConnDep, item: dict[str, Any]
) -> JSONResponse:
    upload = _Upload(request.app.state.settings, uploader)
    try:
        treatment = to_treatment(item, upload.now)
    except TreatmentProblem as problem:
        upload.letter("nightscout:/api/v3/treatments", problem.reason, problem.detail, _raw(item))
        await upload.send(request.app.state.intake, request.app.state.pool)
        raise HTTPException(
            400, f"{problem.reason.value}: {problem.detail} (kept as a dead letter)"
        ) from None
    treatment = await _known_as(conn, uploader, item, treatment)
    stored = await treatment_store.store(conn, uploader.patient_id, uploader.device_id, treatment)
    await conn.commit()
    return _created(stored.identifier, stored.created, stored.srv_modified)


async def _create_document(
    request: Request, uploader: UploaderActor, conn: ConnDep, collection: str, item: dict[str, Any]
) -> JSONResponse:
    upload = _Upload(request.app.state.settings, uploader)
    if collection == "devicestatus":
        answer = await store_devicestatus(conn, upload, uploader, item)
        await conn.commit()
        if upload.records:
            await upload.send(request.app.state.intake, request.app.state.pool)
        if answer.get("stored") is False:
            raise HTTPException(400, f"{answer['dead_letter']}: {answer['detail']} (kept as a dead letter)")
        return _created(answer["identifier"], True, datetime.fromtimestamp(answer["srvModified"] / 1000, UTC))
    try:
        at = check_document(item, upload.now)
    except TreatmentProblem as problem:
        upload.letter(f"nightscout:/api/v3/{collection}", problem.reason, problem.detail, _raw(item))
        await upload.send(request.app.state.intake, request.app.state.pool)
        raise HTTPException(
            400, f"{problem.reason.value}: {problem.detail} (kept as a dead letter)"
        ) from None
    kept = await documents.store(
        conn, uploader.patient_id, uploader.device_id, collection, document_identifier(item), at, item
    )
    await conn.commit()
    return _created(kept.identifier, kept.created, kept.srv_modified)


@router.post("/api/v3/{collection}", responses=_RESPONSES)
async def create(collection: str, request: Request, conn: ConnDep, uploader: UploaderDep) -> JSONResponse:
    """One document: `201` with its `identifier`, or `200` with `isDeduplication: true` when
    it was stored before. A refused document is a dead letter and a `400` saying why."""
    name = _collection(collection)
    item = await _body(request)
    if name == "entries":
        return await _create_entry(request, uploader, conn, item)
    if name == "treatments":
        return await _create_treatment(request, uploader, conn, item)
    return await _create_document(request, uploader, conn, name, item)


@router.get("/api/v3/{collection}", responses=_RESPONSES)
async def search(collection: str, request: Request, conn: ConnDep, uploader: UploaderDep) -> JSONResponse:
    """Newest first, or oldest first with `sort=<time field>`; `limit` (100, at most 1,000)."""
    name = _collection(collection)
    if name == "entries":
        q = search_params(request, "date")
        found = await entries(
            conn,
            uploader.patient_id,
            EntryQuery(
                count=q.limit,
                entry_type=q.entry_type if q.entry_type in ("sgv", "mbg") else None,
                since=q.since,
                after=q.after,
                until=q.until,
                before=q.before,
                ascending=q.ascending,
            ),
        )
        if q.entry_type not in (None, "sgv", "mbg"):
            found = []
    elif name == "treatments":
        q = search_params(request, "created_at")
        query = treatment_store.TreatmentQuery(
            count=q.limit, since=q.since, after=q.after, until=q.until, before=q.before, ascending=q.ascending
        )
        found = await treatment_store.query(conn, uploader.patient_id, query)
    else:
        q = search_params(request, "date")
        found = await documents.search(
            conn,
            uploader.patient_id,
            name,
            limit=q.limit,
            after=q.after or q.since,
            before=q.before or q.until,
            ascending=q.ascending,
        )
    await uploader.audit(conn, f"nightscout.{name}.read", count=len(found))
    return _ok(found)


@router.get("/api/v3/{collection}/history/{since}", responses=_RESPONSES)
async def history(
    collection: str, since: str, request: Request, conn: ConnDep, uploader: UploaderDep
) -> JSONResponse:
    """What changed after `since` (server time, ms), oldest change first, deletions included
    (`isValid: false`); the ETag `W/"<ms>"` is the last change answered."""
    name = _collection(collection)
    after = v3_time(since, "history")
    limit = limit_param(request)
    if name == "entries":
        found = await entries_stored_since(conn, uploader.patient_id, after, limit)
    elif name == "treatments":
        query = treatment_store.TreatmentQuery(count=limit, modified_after=after)
        found = await treatment_store.query(conn, uploader.patient_id, query)
    else:
        found = await documents.history(conn, uploader.patient_id, name, after, limit)
    await uploader.audit(conn, f"nightscout.{name}.read", count=len(found), history=True)
    last = max((d["srvModified"] for d in found), default=ms_of(after))
    return _ok(found, headers={"ETag": f'W/"{last}"', "Last-Modified": _http_date(last)})


def _http_date(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")


@router.get("/api/v3/{collection}/{identifier}", responses=_RESPONSES)
async def read(collection: str, identifier: str, conn: ConnDep, uploader: UploaderDep) -> JSONResponse:
    name = _collection(collection)
    found: dict[str, Any] | None = None
    if name == "treatments":
        stored = await treatment_store.find_identifier(conn, uploader.patient_id, identifier)
        found = None if stored is None else await treatment_store.read_one(conn, uploader.patient_id, stored)
    elif name != "entries":
        found = await documents.read_one(conn, uploader.patient_id, name, identifier)
    else:
        raise HTTPException(404, "entries are searched (by date), not read by identifier")
    if found is None or found.get("isValid") is False:
        raise HTTPException(404, f"no {name} document {identifier[:40]!r}")
    await uploader.audit(conn, f"nightscout.{name}.read", count=1)
    return _ok(found)


@router.patch("/api/v3/{collection}/{identifier}", responses=_RESPONSES)
async def patch(
    collection: str, identifier: str, request: Request, conn: ConnDep, uploader: UploaderDep
) -> JSONResponse:
    """Merge the fields sent into the stored document (AndroidAPS invalidating or editing a
    treatment). Entries are readings: they are not edited."""
    name = _collection(collection)
    changes = await _body(request)
    if name == "entries":
        raise HTTPException(404, "entries are readings and are not edited; upload a new one")
    now = datetime.now(UTC)
    if name == "treatments":
        stored_id = await treatment_store.find_identifier(conn, uploader.patient_id, identifier)
        current = (
            None
            if stored_id is None
            else await treatment_store.read_one(conn, uploader.patient_id, stored_id)
        )
        if stored_id is None or current is None:
            raise HTTPException(404, f"no treatment {identifier[:40]!r}")
        if changes.get("isValid") is False:
            await treatment_store.delete(conn, uploader.patient_id, [stored_id])
            await conn.commit()
            return _ok({"identifier": stored_id, "lastModified": ms_of(datetime.now(UTC))})
        merged = {k: v for k, v in current.items() if k not in _SERVER_FIELDS} | {
            k: v for k, v in changes.items() if k not in _SERVER_FIELDS
        }
        try:
            treatment = dataclasses.replace(to_treatment(merged, now), identifier=stored_id)
        except TreatmentProblem as problem:
            raise HTTPException(400, f"{problem.reason.value}: {problem.detail}") from None
        updated = await treatment_store.update(conn, uploader.patient_id, uploader.device_id, treatment)
        await conn.commit()
        assert updated is not None
        return _ok({"identifier": stored_id, "lastModified": ms_of(updated.srv_modified)})
    if changes.get("isValid") is False:
        if not await documents.delete(conn, uploader.patient_id, name, identifier):
            raise HTTPException(404, f"no {name} document {identifier[:40]!r}")
        await conn.commit()
        return _ok({"identifier": identifier, "lastModified": ms_of(datetime.now(UTC))})
    try:
        check_document(changes, now)
    except TreatmentProblem as problem:
        raise HTTPException(400, f"{problem.reason.value}: {problem.detail}") from None
    clean = {k: v for k, v in changes.items() if k not in _SERVER_FIELDS}
    kept = await documents.patch(conn, uploader.patient_id, name, identifier, clean)
    if kept is None:
        raise HTTPException(404, f"no {name} document {identifier[:40]!r}")
    await conn.commit()
    return _ok({"identifier": identifier, "lastModified": ms_of(kept.srv_modified)})


#: fields the server sets; a client's values for them are not taken
_SERVER_FIELDS = {"_id", "identifier", "srvCreated", "srvModified", "subject", "modifiedBy", "isValid"}


@router.delete("/api/v3/{collection}/{identifier}", responses=_RESPONSES)
async def delete(collection: str, identifier: str, conn: ConnDep, uploader: UploaderDep) -> Response:
    """Mark deleted (history hands the deletion on). Entries are readings: not deleted."""
    name = _collection(collection)
    if name == "entries":
        raise HTTPException(404, "entries are readings and are not deleted")
    if name == "treatments":
        stored_id = await treatment_store.find_identifier(conn, uploader.patient_id, identifier)
        count = (
            0 if stored_id is None else await treatment_store.delete(conn, uploader.patient_id, [stored_id])
        )
    else:
        count = await documents.delete(conn, uploader.patient_id, name, identifier)
    if not count:
        raise HTTPException(404, f"no {name} document {identifier[:40]!r}")
    await conn.commit()
    return _ok({"identifier": identifier})
