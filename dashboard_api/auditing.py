"""The request's audit writer, so a route records what it read or changed in one line:

    async def route(..., audit: Audit) -> ...:
        await audit("observations.read", patient_id, code=code)

The actor and purpose come from the authenticated user; see telehealth/storage/audit.py.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import Depends

from dashboard_api.deps import ConnDep, CurrentUser
from telehealth.storage import audit
from telehealth.storage.people import User


class Auditor:
    def __init__(self, conn: audit.Conn, user: User) -> None:
        self.conn = conn
        self.user = user

    async def __call__(
        self, action: str, patient_id: UUID | None = None, *, purpose: str | None = None, **detail: Any
    ) -> None:
        await audit.record(
            self.conn,
            actor=self.user,
            purpose=purpose or audit.purpose_for(self.user),
            patient_id=patient_id,
            action=action,
            detail=detail,
        )


async def get_auditor(conn: ConnDep, user: CurrentUser) -> Auditor:
    return Auditor(conn, user)


Audit = Annotated[Auditor, Depends(get_auditor)]
