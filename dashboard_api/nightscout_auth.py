"""Nightscout clients' credentials: `API-SECRET` (SHA-1 hex of the uploader's secret, also as
`?secret=`), an access token as `?token=`, `Authorization: Bearer` or `API-SECRET: token=<t>`,
as Nightscout takes them.

A credential is one uploader's, so it reaches one patient. Failed attempts are throttled per
client address with the login throttle (shared by every API process); a valid credential is
limited to `nightscout_requests_per_min` requests a minute in each API process.
"""

from __future__ import annotations

import collections
import math
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated
from uuid import UUID

from fastapi import Depends, HTTPException, Request

from dashboard_api.deps import ConnDep, SettingsDep
from telehealth.nightscout import secret_digest
from telehealth.storage import audit, logins, uploaders

ROLE = "uploader"
#: an uploader's credential is the patient's own, shared with the apps and followers they choose
PURPOSE = "self-access"


@dataclass(frozen=True)
class UploaderActor:
    """The audit actor for a request made with an uploader's credential."""

    device_id: str
    patient_id: UUID

    @property
    def id(self) -> int | None:
        return None

    @property
    def username(self) -> str:
        return f"nightscout:{self.device_id}"

    @property
    def role(self) -> str:
        return ROLE

    async def audit(self, conn: audit.Conn, action: str, **detail: object) -> None:
        await audit.record(
            conn, actor=self, purpose=PURPOSE, patient_id=self.patient_id, action=action, detail=detail
        )


class RateLimiter:
    """At most `limit` requests per credential in any 60 s (sliding window, this process)."""

    def __init__(self, limit: int, window_s: float = 60.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self._hits: dict[str, collections.deque[float]] = {}

    def wait(self, key: str, now: float | None = None) -> float:
        """0 and the request is counted, or the seconds until one more is allowed."""
        now = time.monotonic() if now is None else now
        hits = self._hits.setdefault(key, collections.deque())
        while hits and hits[0] <= now - self.window_s:
            hits.popleft()
        if len(hits) >= self.limit:
            return hits[0] + self.window_s - now
        hits.append(now)
        return 0.0


def _limiter(request: Request, limit: int) -> RateLimiter:
    state = request.app.state
    if getattr(state, "nightscout_limiter", None) is None:
        state.nightscout_limiter = RateLimiter(limit)
    limiter: RateLimiter = state.nightscout_limiter
    return limiter


def presented(request: Request) -> tuple[bytes | None, bytes | None]:
    """(secret digest, token digest) of what the request presents, either may be None."""
    secret = token = None
    header = request.headers.get("api-secret") or request.query_params.get("secret")
    if header and header[:6].lower() == "token=":
        token = uploaders.token_digest(header[6:])  # `API-SECRET: token=<t>`, as Nightscout takes
    elif header:
        secret = secret_digest(header)
        token = uploaders.token_digest(header)  # some clients put the bare token in API-SECRET
    query_token = request.query_params.get("token")
    authorization = request.headers.get("authorization", "")
    if query_token:
        token = uploaders.token_digest(query_token)
    elif authorization[:7].lower() == "bearer " and authorization[7:].strip():
        token = uploaders.token_digest(authorization[7:])
    return secret, token


def _too_many(wait: float, why: str) -> HTTPException:
    return HTTPException(429, why, headers={"Retry-After": str(max(1, math.ceil(wait)))})


async def get_uploader(request: Request, conn: ConnDep, settings: SettingsDep) -> UploaderActor:
    secret, token = presented(request)
    if secret is None and token is None:
        raise HTTPException(
            401, "send API-SECRET (SHA-1 of the uploader's secret) or an access token (?token= or Bearer)"
        )
    return await authenticate(request, conn, settings, secret, token)


async def authenticate(
    request: Request, conn: ConnDep, settings: SettingsDep, secret: bytes | None, token: bytes | None
) -> UploaderActor:
    """The uploader of this secret or token digest; failures are throttled per address."""
    address = request.client.host if request.client else "unknown"
    key = f"nightscout:{address}"
    policy = logins.Policy(
        settings.login_max_failures_per_address,
        timedelta(seconds=settings.login_window_s),
        timedelta(seconds=settings.login_lockout_s),
    )
    locked = await logins.locked_for(conn, key)
    if locked is not None:
        raise _too_many(locked, "too many failed attempts from this address; try again later")
    found = await uploaders.find(conn, secret=secret, token=token)
    if found is None or found.revoked:
        # Only failures are written: a valid upload costs two index reads, no commit. (Unlike
        # password logins, a burst of parallel guesses gains nothing against 192-bit secrets.)
        wait = await logins.attempt(conn, key, policy)
        await logins.prune(conn)
        if wait > 0:
            raise _too_many(wait, "too many failed attempts from this address; try again later")
        raise HTTPException(401, "the API secret or token is unknown or revoked")
    wait = _limiter(request, settings.nightscout_requests_per_min).wait(found.device_id)
    if wait > 0:
        raise _too_many(wait, "too many requests with this credential; try again later")
    return UploaderActor(found.device_id, found.patient_id)


UploaderDep = Annotated[UploaderActor, Depends(get_uploader)]
