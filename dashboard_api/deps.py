"""Request dependencies: database connection and the authenticated user with a role."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

import psycopg
from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg_pool import AsyncConnectionPool

from telehealth.settings import Settings
from telehealth.storage.consent_cache import ConsentCache
from telehealth.storage.db import checkout
from telehealth.storage.people import User, user_for_token

bearer = HTTPBearer(auto_error=False)


def get_pool(request: Request) -> AsyncConnectionPool:
    pool: AsyncConnectionPool = request.app.state.pool
    return pool


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_conn(
    pool: Annotated[AsyncConnectionPool, Depends(get_pool)],
) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    async with checkout(pool) as conn:
        yield conn


def get_consent(request: Request) -> ConsentCache:
    consent: ConsentCache = request.app.state.consent
    return consent


ConnDep = Annotated[psycopg.AsyncConnection[Any], Depends(get_conn)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ConsentDep = Annotated[ConsentCache, Depends(get_consent)]


async def get_current_user(
    conn: ConnDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> User:
    if credentials is None:
        raise HTTPException(401, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"})
    user = await user_for_token(conn, credentials.credentials)
    if user is None:
        raise HTTPException(401, "the token is unknown or expired", headers={"WWW-Authenticate": "Bearer"})
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


def require(*roles: str) -> Callable[[User], Coroutine[Any, Any, User]]:
    async def check(user: CurrentUser) -> User:
        if user.role not in roles:
            raise HTTPException(403, f"this needs the role {' or '.join(roles)}; you are {user.role}")
        return user

    return check


AdminUser = Annotated[User, Depends(require("admin"))]
ClinicianUser = Annotated[User, Depends(require("clinician"))]
