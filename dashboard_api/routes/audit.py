"""The audit trail through the API: a patient's access log, the chain head, token revocation."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, Field

from dashboard_api.auditing import Audit
from dashboard_api.deps import AdminUser, ConnDep, CurrentUser
from dashboard_api.routes.access import authorize_patient
from telehealth.audit_actions import describe
from telehealth.storage import audit as audit_log
from telehealth.storage.people import revoke_user_tokens, user_by_name

router = APIRouter(tags=["audit"])


class AccessEntry(BaseModel):
    id: int
    at: datetime
    actor: str = Field(description="the username")
    role: str
    purpose: str = Field(description="why: direct-care, self-access, administration, research")
    action: str = Field(description="what, e.g. observations.read, thresholds.update, access.denied")
    description: str = Field(description="the action in words, e.g. 'read your readings'")
    detail: dict[str, Any]


class ChainHead(BaseModel):
    id: int = Field(description="number of the newest row (0: empty)")
    hash: str = Field(description="SHA-256 hex of the newest row; publish it to pin the chain")
    at: datetime | None


@router.get("/api/v1/patients/{patient_id}/access-log")
async def access_log(
    patient_id: UUID,
    conn: ConnDep,
    user: CurrentUser,
    audit: Audit,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    before: Annotated[int | None, Query(ge=1, le=2**63 - 1, description="rows older than this id")] = None,
) -> list[AccessEntry]:
    """Who read or changed this patient's data, when and why, newest first (that patient, admins)."""
    await authorize_patient(conn, user, patient_id, roles=("patient", "admin"))
    entries = await audit_log.access_log(conn, patient_id, limit=limit, before=before)
    await audit("access_log.read", patient_id)
    if user.role == "patient":
        # Staff are named; another patient who probed this record is not (their identity is
        # their own personal data). Admins see every name.
        for entry in entries:
            if entry["role"] == "patient" and entry["actor"] != user.username:
                entry["actor"] = "another patient"
    return [AccessEntry(**e, description=describe(e["action"])) for e in entries]


@router.get("/api/v1/audit/head")
async def chain_head(conn: ConnDep, _: AdminUser) -> ChainHead:
    head = await audit_log.head(conn)
    return ChainHead(id=head.id, hash=head.hash, at=head.at)


class Revoked(BaseModel):
    username: str
    revoked: int = Field(description="live tokens revoked")


@router.post("/api/v1/users/{username}/revoke-tokens")
async def revoke_tokens(
    username: Annotated[str, Path(max_length=150, pattern=r"^[^\x00]+$")],
    conn: ConnDep,
    _: AdminUser,
    audit: Audit,
) -> Revoked:
    """Log a user out everywhere (a lost laptop, a leaver)."""
    target = await user_by_name(conn, username)
    if target is None:
        raise HTTPException(404, f"no user {username!r}")
    revoked = await revoke_user_tokens(conn, target.id)
    await audit("auth.revoke_tokens", target_user=username, revoked=revoked)
    return Revoked(username=username, revoked=revoked)


@router.get("/access-log", include_in_schema=False)
async def access_log_page() -> RedirectResponse:
    """The patient's page listing who accessed their data."""
    return RedirectResponse("/static/access-log.html")
