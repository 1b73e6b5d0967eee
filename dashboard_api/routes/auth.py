"""Log in (username and password for a bearer token), log out, change the password.

Failed logins are counted per username and per client address; at the limit the key is
locked out and answered 429 with Retry-After. Unknown usernames cost the same argon2 work as
known ones, and hashing runs on worker threads, so logins neither leak usernames by timing
nor stall the event loop.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, Field

from dashboard_api.deps import ConnDep, CurrentUser, SettingsDep, bearer
from dashboard_api.problems import documented
from dashboard_api.schemas import Text, TokenOut
from telehealth.passwords import password_problem
from telehealth.settings import Settings
from telehealth.storage import audit, logins
from telehealth.storage.people import (
    User,
    authenticate,
    issue_token,
    revoke_token,
    set_glucose_unit,
    set_password,
)

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1/auth", tags=["auth"])

_THROTTLED: dict[int | str, dict[str, Any]] = {
    401: documented("wrong username or password"),
    429: documented("too many failed logins: locked out; see Retry-After"),
}


class Login(BaseModel):
    username: Text = Field(min_length=1, max_length=150)
    password: Text = Field(min_length=1, max_length=1024)


class PasswordChange(BaseModel):
    current_password: Text = Field(min_length=1, max_length=1024)
    new_password: Text = Field(min_length=12, max_length=1024)


def _policies(settings: Settings) -> tuple[logins.Policy, logins.Policy]:
    window, lockout = timedelta(seconds=settings.login_window_s), timedelta(seconds=settings.login_lockout_s)
    return (
        logins.Policy(settings.login_max_failures, window, lockout),
        logins.Policy(settings.login_max_failures_per_address, window, lockout),
    )


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def _check_password(
    conn: ConnDep, settings: Settings, request: Request, username: str, password: str
) -> User:
    """The user, or 401, or 429 while the username or the client address is locked out."""
    per_user, per_address = _policies(settings)
    address = _client(request)
    user_key, addr_key = logins.user_key(username), logins.address_key(address)
    wait = await logins.attempt(conn, user_key, per_user) or await logins.attempt(conn, addr_key, per_address)
    if wait > 0:
        log.warning("login for %r from %s refused: locked out for %.0f s", username, address, wait)
        raise HTTPException(
            429, "too many failed logins; try again later", headers={"Retry-After": str(math.ceil(wait))}
        )
    user = await authenticate(conn, username, password)
    if user is None:
        log.warning("failed login for %r from %s", username, address)
        await logins.prune(conn)
        raise HTTPException(401, "wrong username or password")
    await logins.succeeded(conn, user_key, forget=True)
    await logins.succeeded(conn, addr_key, forget=False)
    return user


async def _new_token(conn: ConnDep, settings: Settings, user: User) -> TokenOut:
    ttl = timedelta(seconds=settings.token_ttl_s)
    token = await issue_token(conn, user.id, ttl=ttl)
    return TokenOut(access_token=token, role=user.role, expires_in=int(ttl.total_seconds()))


@router.post("/token", responses=_THROTTLED)
async def token(body: Login, request: Request, conn: ConnDep, settings: SettingsDep) -> TokenOut:
    user = await _check_password(conn, settings, request, body.username, body.password)
    return await _new_token(conn, settings, user)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(
    _: CurrentUser,
    conn: ConnDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Response:
    """Revoke the token this request was made with."""
    assert credentials is not None  # CurrentUser already refused requests without one
    await revoke_token(conn, credentials.credentials)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/password", responses=_THROTTLED)
async def change_password(
    body: PasswordChange, request: Request, user: CurrentUser, conn: ConnDep, settings: SettingsDep
) -> TokenOut:
    """Every token of the user is revoked (all sessions end); a fresh one is returned."""
    await _check_password(conn, settings, request, user.username, body.current_password)
    problem = password_problem(body.new_password, username=user.username)
    if problem:
        raise HTTPException(422, f"new_password: {problem}")
    revoked = await set_password(conn, user.id, body.new_password)
    await audit.record(
        conn,
        actor=user,
        purpose="account",
        patient_id=None,
        action="auth.password_change",
        detail={"revoked": revoked},
    )
    return await _new_token(conn, settings, user)


class Preferences(BaseModel):
    glucose_unit: Literal["mmol/L", "mg/dL"] | None = Field(
        description="the unit the dashboard shows and takes glucose in; null: the deployment's default"
    )


def _me(user: User, settings: Settings) -> dict[str, object]:
    return {
        "username": user.username,
        "role": user.role,
        "care_teams": list(user.care_teams),
        "patient_id": str(user.patient_id) if user.patient_id else None,
        "glucose_unit": user.glucose_unit or settings.glucose_unit,
        "glucose_unit_chosen": user.glucose_unit is not None,
    }


@router.get("/me")
async def me(user: CurrentUser, settings: SettingsDep) -> dict[str, object]:
    """Who the token belongs to, and their preferences (glucose unit)."""
    return _me(user, settings)


@router.put("/me/preferences")
async def set_preferences(
    body: Preferences, user: CurrentUser, conn: ConnDep, settings: SettingsDep
) -> dict[str, object]:
    """The user's own preferences; answers as GET /me does."""
    await set_glucose_unit(conn, user.id, body.glucose_unit)
    return _me(replace(user, glucose_unit=body.glucose_unit), settings)
