"""The preamble every per-patient FHIR route shares, as one dependency: the query's parameters
(unknown ones refused), the patient, the caller's right to read them, and the audit."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
from fastapi import HTTPException, Request

from dashboard_api.auditing import Audit, Auditor
from dashboard_api.deps import ConnDep, CurrentUser
from dashboard_api.routes.access import PATIENT_READERS, authorize_patient
from telehealth.fhir import search
from telehealth.storage.people import User


def checked_params(request: Request, allowed: set[str]) -> dict[str, list[str]]:
    """The query's parameters by name; an unknown one is refused, never silently ignored (a
    client that thinks it filtered must not get more than it asked for)."""
    found: dict[str, list[str]] = {}
    for name, value in request.query_params.multi_items():
        if name not in allowed:
            raise HTTPException(400, f"search parameter {name!r} is not supported; see /fhir/metadata")
        found.setdefault(name, []).append(value)
    return found


def one(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    if values and len(values) > 1:
        raise HTTPException(400, f"{name} may be given once")
    return values[0] if values else None


def patient_param(params: dict[str, list[str]]) -> UUID:
    patient = one(params, "patient")
    subject = one(params, "subject")
    if patient is None and subject is None:
        raise HTTPException(400, "patient (or subject) is required: searches are per patient")
    try:
        ids = {search.parse_patient(v) for v in (patient, subject) if v is not None}
    except search.SearchError as exc:
        raise HTTPException(400, str(exc)) from exc
    if len(ids) > 1:
        raise HTTPException(400, "patient and subject name different patients")
    return ids.pop()


@dataclass(frozen=True)
class Scope:
    """A patient the caller may read here, and the query's parameters (all of them known)."""

    patient_id: UUID
    params: dict[str, list[str]]


Authorize = Callable[[psycopg.AsyncConnection[Any], User, UUID], Awaitable[None]]


class PatientScope:
    """The preamble every per-patient FHIR route shares, as a dependency: refuse unknown query
    parameters, find the patient (the path's id, else `patient`/`subject`), check the caller may
    read them (a 404 and an audited refusal if not), and audit the read when `action` is given.

    As a dependency it runs before FastAPI validates the route's own declared parameters."""

    def __init__(
        self,
        allowed: set[str] | None,
        *,
        action: str | None = None,
        roles: tuple[str, ...] = PATIENT_READERS,
        authorize: Authorize | None = None,
        **audit_fields: Any,
    ) -> None:
        self.allowed = allowed
        self.action = action
        self.roles = roles
        self.authorize = authorize
        self.audit_fields = audit_fields

    async def _check(
        self, conn: ConnDep, user: User, audit: Auditor, params: dict[str, list[str]], patient_id: UUID
    ) -> Scope:
        if self.authorize is not None:
            await self.authorize(conn, user, patient_id)
        else:
            await authorize_patient(conn, user, patient_id, roles=self.roles)
        if self.action is not None:
            await audit(self.action, patient_id, **self.audit_fields)
        return Scope(patient_id, params)

    def _params(self, request: Request) -> dict[str, list[str]]:
        if self.allowed is None:  # a read by id: its query is not looked at
            return {}
        return checked_params(request, self.allowed)

    async def __call__(self, request: Request, conn: ConnDep, user: CurrentUser, audit: Audit) -> Scope:
        params = self._params(request)
        return await self._check(conn, user, audit, params, patient_param(params))


class PathPatientScope(PatientScope):
    """The same, for routes that name the patient in the path (`/Patient/{patient_id}...`)."""

    async def __call__(  # type: ignore[override]
        self, patient_id: UUID, request: Request, conn: ConnDep, user: CurrentUser, audit: Audit
    ) -> Scope:
        return await self._check(conn, user, audit, self._params(request), patient_id)
