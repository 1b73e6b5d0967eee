"""Who may see which patient: the clinician's own care teams, or the patient themself."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg
from fastapi import HTTPException

from telehealth.storage.people import User


async def authorize_patient(conn: psycopg.AsyncConnection[Any], user: User, patient_id: UUID) -> None:
    cur = await conn.execute("SELECT care_team FROM patients WHERE id = %s", (patient_id,))
    row = await cur.fetchone()
    if row is None:
        raise HTTPException(404, f"no patient {patient_id}")
    if user.role == "clinician" and row["care_team"] in user.care_teams:
        return
    if user.role == "patient" and user.patient_id == patient_id:
        return
    raise HTTPException(403, "this patient is not in your care")
