"""`GET /api/v1/alerts/stream`: Server-Sent Events of the clinician's care teams' alerts.

A fresh connection first gets a `snapshot` event (the active alerts, with the stream
position they are consistent with); a reconnect sending `Last-Event-ID` gets every event
after that position instead, read from the database, so nothing is missed. Then one `alert`
event per transition (open, escalation, acknowledge, resolve), the event id being its
commit-ordered position. Every 5 s, a `values` event carries the current value of each
active alert whose reading changed (the latest credible reading of its code and its rate),
so a row shows where the patient is now, not only the value that opened it. Comment lines
are heartbeats; at each one the token is checked again, so a revoked or expired token ends
the stream.

The token comes in the `Authorization` header. The page reads the stream with fetch() and
parses it itself (EventSource cannot send headers), so tokens never appear in URLs or logs.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Header, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg_pool import AsyncConnectionPool
from sse_starlette import EventSourceResponse, ServerSentEvent

from dashboard_api.live import AlertHub
from dashboard_api.schemas import Alert, CurrentValue
from telehealth.storage import audit
from telehealth.storage.alert_stream import current_values, events_after, snapshot
from telehealth.storage.db import checkout
from telehealth.storage.people import User, user_for_token

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])
_bearer = HTTPBearer(auto_error=False)

HEARTBEAT_S = 15.0
VALUES_S = 5.0
RETRY_MS = 2000
_PAGE = 500

_DESCRIPTION = """`text/event-stream`. Events: `snapshot` (data `{"alerts": [...]}`, the active
alerts), then `alert` (data `{"pos", "event": {"id", "status", "severity", "actor", "note",
"at"}, "alert": {...}}`), each with `id:` = its stream position; `values` (data `{"values":
{"<alert id>": {"value", "unit", "measured_at", "rate_per_min"}}}`, every 5 s when a current
value changed); comment lines as heartbeats every 15 s. Send `Last-Event-ID` to resume after a
position instead of a snapshot."""


def _alert_event(row: dict[str, Any]) -> ServerSentEvent:
    alert = Alert.model_validate(row["alert"]).model_dump(mode="json")
    data = {"pos": row["pos"], "event": row["event"], "alert": alert}
    return ServerSentEvent(json.dumps(data), event="alert", id=str(row["pos"]))


async def _user(pool: AsyncConnectionPool, token: str) -> User | None:
    async with checkout(pool) as conn:
        return await user_for_token(conn, token)


async def _audit(pool: AsyncConnectionPool, user: User, action: str, patient: Any, **detail: Any) -> None:
    """What the stream shows is a read of patient data: recorded like any list or view."""
    async with checkout(pool) as conn:
        await audit.record(
            conn,
            actor=user,
            purpose=audit.purpose_for(user),
            patient_id=UUID(str(patient)) if patient else None,
            action=action,
            detail=detail,
        )


async def _events(
    pool: AsyncConnectionPool, hub: AlertHub, user: User, token: str, after: int | None
) -> AsyncIterator[ServerSentEvent]:
    """Snapshot or catch-up from the database, then live events from the hub, in order."""
    teams = list(user.care_teams)
    # Subscribe before reading the database: whatever commits meanwhile is queued, and
    # anything the read already returned is skipped by position.
    subscription = hub.subscribe(frozenset(teams))
    sent: dict[int, Any] = {}  # alert id -> the current value the client has
    audited: set[str] = set()  # patients whose current values this stream has recorded
    try:
        yield ServerSentEvent(retry=RETRY_MS, comment="telehealth alert stream")
        if after is None:
            async with checkout(pool) as conn:
                position, alerts = await snapshot(conn, teams)
            data = {"alerts": [Alert.model_validate(a).model_dump(mode="json") for a in alerts]}
            shown = sorted({str(a["patient_id"]) for a in data["alerts"]})
            await _audit(pool, user, "alerts.stream.snapshot", None, patients=shown)
            sent.update({a["id"]: a["current"] for a in alerts})
            audited.update(shown)
            yield ServerSentEvent(json.dumps(data), event="snapshot", id=str(position))
        else:
            position = after
            while True:
                async with checkout(pool) as conn:
                    rows = await events_after(conn, position, teams, _PAGE)
                for row in rows:
                    position = row["pos"]
                    await _audit(pool, user, "alerts.stream.event", row["alert"]["patient_id"], pos=position)
                    yield _alert_event(row)
                if len(rows) < _PAGE:
                    break
        loop = asyncio.get_running_loop()
        next_heartbeat = loop.time() + HEARTBEAT_S
        next_values = loop.time() + VALUES_S
        while not subscription.overflowed:
            try:
                timeout = max(0.0, min(next_heartbeat, next_values) - loop.time())
                row = await asyncio.wait_for(subscription.queue.get(), timeout)
            except TimeoutError:
                if loop.time() >= next_values:
                    next_values = loop.time() + VALUES_S
                    values = await _changed_values(pool, user, teams, sent, audited)
                    if values:
                        yield ServerSentEvent(json.dumps({"values": values}, default=str), event="values")
                if loop.time() >= next_heartbeat:
                    next_heartbeat = loop.time() + HEARTBEAT_S
                    if await _user(pool, token) is None:
                        yield ServerSentEvent("{}", event="signed-out")
                        return
                    yield ServerSentEvent(comment="heartbeat")
                continue
            if row["pos"] > position:  # else already sent by the catch-up read
                position = row["pos"]
                await _audit(pool, user, "alerts.stream.event", row["alert"]["patient_id"], pos=position)
                yield _alert_event(row)
        # Too slow to keep up: the stream ends; the client resumes from its last event id.
    finally:
        hub.unsubscribe(subscription)


async def _changed_values(
    pool: AsyncConnectionPool, user: User, teams: list[str], sent: dict[int, Any], audited: set[str]
) -> dict[str, Any]:
    """The current values that changed since last sent; a patient's first one is audited."""
    async with checkout(pool) as conn:
        now = await current_values(conn, teams)
    changed = {i: v for i, v in now.items() if v["current"] is not None and sent.get(i) != v["current"]}
    sent.clear()
    sent.update({i: v["current"] for i, v in now.items()})
    patients = sorted({str(v["patient_id"]) for v in changed.values()} - audited)
    if patients:
        await _audit(pool, user, "alerts.stream.values", None, patients=patients)
        audited.update(patients)
    return {
        str(i): CurrentValue.model_validate(v["current"]).model_dump(mode="json") for i, v in changed.items()
    }


@router.get(
    "/stream",
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": _DESCRIPTION}},
)
async def stream(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=20)] = None,
) -> EventSourceResponse:
    """Live alerts of your care teams (clinicians)."""
    if credentials is None:
        raise HTTPException(401, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"})
    pool: AsyncConnectionPool = request.app.state.pool
    user = await _user(pool, credentials.credentials)
    if user is None:
        raise HTTPException(401, "the token is unknown or expired", headers={"WWW-Authenticate": "Bearer"})
    if user.role != "clinician":
        raise HTTPException(403, f"this needs the role clinician; you are {user.role}")
    after = None
    if last_event_id is not None and last_event_id.strip():
        if not last_event_id.strip().isdecimal():
            raise HTTPException(422, "Last-Event-ID must be a stream position (a whole number)")
        after = int(last_event_id.strip())
    hub: AlertHub = request.app.state.alert_hub
    return EventSourceResponse(
        _events(pool, hub, user, credentials.credentials, after), headers={"Cache-Control": "no-store"}
    )
