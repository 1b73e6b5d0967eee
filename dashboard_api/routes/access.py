"""Who may see which patient: the clinician's own care teams, or the patient themself.

A patient who does not exist and one outside the caller's care get the same 404, so the
answer does not reveal which patient ids exist. Refused attempts on a real patient are
audited, so the patient can see them in their access log.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg
from fastapi import HTTPException

from telehealth.storage import audit
from telehealth.storage.people import User, patient_care_team

PATIENT_READERS = ("clinician", "patient")


async def authorize_patient(
    conn: psycopg.AsyncConnection[Any],
    user: User,
    patient_id: UUID,
    *,
    roles: tuple[str, ...] = PATIENT_READERS,
) -> None:
    if user.role not in roles:
        raise HTTPException(403, f"the {user.role} role may not read or change patient records")
    care_team = await patient_care_team(conn, patient_id)
    if care_team is not None:
        if user.role == "admin":
            return
        if user.role == "clinician" and care_team in user.care_teams:
            return
        if user.role == "patient" and user.patient_id == patient_id:
            return
        await audit.record(
            conn, actor=user, purpose=audit.purpose_for(user), patient_id=patient_id, action="access.denied"
        )
    raise HTTPException(404, f"no patient {patient_id} in your care")
