"""What a patient can see of secondary use: which projects and releases their data went into."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, HTTPException

from dashboard_api.auditing import Audit
from dashboard_api.deps import ConnDep, CurrentUser
from dashboard_api.routes.consent import authorize
from telehealth.research.projects import all_projects
from telehealth.research.pseudonym import pseudonym
from telehealth.storage.releases import releases_of

router = APIRouter(prefix="/api/v1/patients", tags=["consent"])


@router.get("/{patient_id}/data-uses")
async def data_uses(patient_id: UUID, conn: ConnDep, user: CurrentUser, audit: Audit) -> list[dict[str, Any]]:
    """Per project: the releases this patient's readings contributed to, with the consent version
    that permitted it. Releases record project-keyed pseudonyms, so this is found per project."""
    if user.role not in ("admin", "patient"):
        raise HTTPException(403, "data uses are shown to the patient themself and to admins")
    await authorize(conn, user, patient_id, clinician_reads=False)
    await audit("data_uses.read", patient_id)
    projects = await all_projects(conn)
    out = []
    for project, key in projects:
        releases = await releases_of(conn, pseudonym(key, patient_id), project.id)
        if releases:
            out.append(
                {
                    "project": project.model_dump(
                        mode="json", include={"slug", "title", "owner", "purpose", "starts_on", "ends_on"}
                    ),
                    "releases": releases,
                }
            )
    return out
