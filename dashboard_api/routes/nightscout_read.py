"""Nightscout API v1 reads for followers' apps and watch faces, scoped to the credential's
patient and written to that patient's access log: entries, status, verifyauth."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request

from dashboard_api.deps import ConnDep
from dashboard_api.nightscout_auth import UploaderDep
from dashboard_api.nightscout_query import check_count, count_param, find_filters, parse_time
from dashboard_api.problems import documented
from telehealth.nightscout import mg_dl, ms_of
from telehealth.storage import nightscout_documents as documents
from telehealth.storage.nightscout_reads import EntryQuery, entries

router = APIRouter(prefix="/api/v1", tags=["nightscout"])

#: what `status.json` reports; clients check it is a recent Nightscout
NIGHTSCOUT_VERSION = "15.0.2"
_OPERATORS = frozenset({"gte", "gt", "lte", "lt", "eq"})
_OPS = {"gte": "since", "gt": "after", "lte": "until", "lt": "before"}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: documented("an unsupported or malformed query"),
    401: documented("no credential, or an unknown or revoked one"),
    429: documented("too many requests or failed attempts"),
}


def parse_query(request: Request, entry_type: str | None, count: int | None = None) -> EntryQuery | None:
    """`count` and the `find[...]` filters common clients send (`dashboard_api.nightscout_query`).
    None: a type this server has no entries of (`cal`), so the answer is empty."""
    bounds: dict[str, datetime] = {}
    none_of_type = False
    for key, field, op, value in find_filters(request, _OPERATORS):
        if field == "type" and op in (None, "eq"):
            if value not in ("sgv", "mbg") or entry_type not in (None, value):
                none_of_type = True
            else:
                entry_type = value
        elif field in ("date", "dateString") and op not in (None, "eq"):
            bounds[_OPS[op]] = parse_time(value, f"find[{field}]", epoch_ms=field == "date")
        else:
            supported = "find[date], find[dateString], find[type]"
            raise HTTPException(400, f"filter {key[:60]!r} is not supported ({supported})")
    if count is None:
        count = count_param(request, 10)
    check_count(count)
    if none_of_type:
        return None
    return EntryQuery(
        count=count,
        entry_type=entry_type,
        since=bounds.get("since"),
        after=bounds.get("after"),
        until=bounds.get("until"),
        before=bounds.get("before"),
    )


async def _read(conn: ConnDep, uploader: UploaderDep, query: EntryQuery | None) -> list[dict[str, Any]]:
    found = [] if query is None else await entries(conn, uploader.patient_id, query)
    entry_type = None if query is None else query.entry_type
    await uploader.audit(conn, "nightscout.entries.read", count=len(found), type=entry_type)
    return found


@router.get("/entries", responses=_RESPONSES)
@router.get("/entries.json", responses=_RESPONSES, include_in_schema=False)
async def get_entries(request: Request, conn: ConnDep, uploader: UploaderDep) -> list[dict[str, Any]]:
    """The patient's glucose, newest first, in mg/dL: `?count=N` (10), `find[date][$gte]=` (ms)."""
    return await _read(conn, uploader, parse_query(request, None))


@router.get("/entries/{spec}", responses=_RESPONSES | {404: documented("not a type this server serves")})
async def get_entries_of(
    spec: str, request: Request, conn: ConnDep, uploader: UploaderDep
) -> list[dict[str, Any]]:
    """`sgv.json`, `mbg.json`, or `current.json` (the newest CGM entry)."""
    name = spec.removesuffix(".json")
    if name == "current":
        return await _read(conn, uploader, parse_query(request, "sgv", count=1))
    if name not in ("sgv", "mbg"):
        raise HTTPException(404, f"entries/{spec} is not served (sgv, mbg and current are)")
    return await _read(conn, uploader, parse_query(request, name))


@router.get("/status", responses=_RESPONSES)
@router.get("/status.json", responses=_RESPONSES, include_in_schema=False)
async def status(conn: ConnDep, uploader: UploaderDep) -> dict[str, Any]:
    """Nightscout's status document: the server is up, mg/dL, the default glucose targets."""
    now = datetime.now(UTC)
    await uploader.audit(conn, "nightscout.status.read")
    return {
        "status": "ok",
        "name": "telehealth-stream",
        "version": NIGHTSCOUT_VERSION,
        "serverTime": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "serverTimeEpoch": ms_of(now),
        "apiEnabled": True,
        "careportalEnabled": False,
        "boluscalcEnabled": False,
        "settings": {
            "units": "mg/dl",
            "timeFormat": 24,
            "enable": [],
            "thresholds": {
                "bgHigh": mg_dl(13.9),
                "bgTargetTop": mg_dl(10.0),
                "bgTargetBottom": mg_dl(3.9),
                "bgLow": mg_dl(3.0),
            },
        },
        "extendedSettings": {},
        "authorized": None,
    }


@router.get("/experiments/test", responses=_RESPONSES)
async def experiments_test(_: UploaderDep) -> dict[str, str]:
    """What Loop calls to check a site and its secret before saving them: 200 or 401."""
    return {"status": "ok"}


@router.get("/devicestatus", responses=_RESPONSES)
@router.get("/devicestatus.json", responses=_RESPONSES, include_in_schema=False)
async def get_devicestatus(request: Request, conn: ConnDep, uploader: UploaderDep) -> list[dict[str, Any]]:
    """The patient's devicestatus documents as their apps uploaded them (pump, loop, uploader
    battery), newest first: `count` (10)."""
    count = count_param(request, 10)
    found = await documents.search(conn, uploader.patient_id, "devicestatus", limit=count)
    await uploader.audit(conn, "nightscout.devicestatus.read", count=len(found))
    return found


@router.get("/verifyauth", responses=_RESPONSES)
async def verifyauth(_: UploaderDep) -> dict[str, Any]:
    """What uploader apps call to check their credential before uploading."""
    return {
        "status": 200,
        "message": {
            "canRead": True,
            "canWrite": True,
            "isAdmin": False,
            "message": "OK",
            "rolefound": "FOUND",
            "permissions": "ROLE",
        },
    }
