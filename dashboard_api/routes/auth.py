"""Exchange a username and password for a bearer token."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel

from dashboard_api.deps import ConnDep, CurrentUser
from dashboard_api.schemas import TokenOut
from telehealth.storage.people import authenticate, issue_token

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


class Login(BaseModel):
    username: str
    password: str


@router.post("/token")
async def token(body: Login, conn: ConnDep) -> TokenOut:
    user = await authenticate(conn, body.username, body.password)
    if user is None:
        raise HTTPException(401, "wrong username or password")
    return TokenOut(access_token=await issue_token(conn, user.id), role=user.role)


@router.get("/me")
async def me(user: CurrentUser) -> dict[str, object]:
    return {"username": user.username, "role": user.role, "care_teams": list(user.care_teams)}
