"""A patient's treatments (carbs, insulin, basal, notes, exercise, site changes) as their apps
uploaded them, for the care team: scoped and audited like the readings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from dashboard_api.auditing import Audit
from dashboard_api.deps import ConnDep, CurrentUser
from dashboard_api.routes.access import authorize_patient
from telehealth.storage.treatments import for_clinician

router = APIRouter(prefix="/api/v1/patients", tags=["patients"])

#: the longest period one request covers
MAX_PERIOD = timedelta(days=90)
MAX_ROWS = 10_000


class TreatmentOut(BaseModel):
    identifier: str = Field(description="the uploading app's own identifier (or type and time)")
    event_type: str = Field(description="Nightscout's eventType: Meal Bolus, Temp Basal, Note, ...")
    created_at: datetime
    carbs_g: float | None
    insulin_u: float | None = Field(description="bolus insulin, units")
    basal_u_per_h: float | None = Field(description="a temporary basal rate, units per hour")
    duration_min: float | None
    notes: str | None
    entered_by: str | None = Field(description="who or which app entered it, as the app says")
    device_id: str = Field(description="the uploader whose credential stored it")


@router.get("/{patient_id}/treatments")
async def patient_treatments(
    patient_id: UUID,
    conn: ConnDep,
    user: CurrentUser,
    audit: Audit,
    start: Annotated[datetime | None, Query(alias="from", description="default: 24 h before `to`")] = None,
    end: Annotated[datetime | None, Query(alias="to", description="default: now")] = None,
) -> list[TreatmentOut]:
    """Treatments in [from, to), oldest first (at most 90 days, 10,000 rows). They are what the
    patient's apps report, not measurements: no alert is raised from them."""
    await authorize_patient(conn, user, patient_id)
    end = end or datetime.now(UTC)
    start = start or end - timedelta(hours=24)
    if start.tzinfo is None or end.tzinfo is None:
        raise HTTPException(422, "from and to need a UTC offset")
    if not start < end or end - start > MAX_PERIOD:
        raise HTTPException(422, "from must be before to, at most 90 days apart")
    rows = await for_clinician(conn, patient_id, start, end, MAX_ROWS)
    await audit("treatments.read", patient_id, count=len(rows))
    return [TreatmentOut(**{k: v for k, v in row.items() if k != "srv_modified"}) for row in rows]
