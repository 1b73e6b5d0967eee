"""The public register: every research project and every release, readable without login."""

from __future__ import annotations

from importlib import resources
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from dashboard_api.deps import ConnDep
from telehealth.research.projects import all_projects
from telehealth.storage.releases import all_releases

router = APIRouter(tags=["research"])


@router.get("/api/v1/research/register")
async def register(conn: ConnDep) -> dict[str, Any]:
    """Projects (owner, purpose, codes, cohort, dates, privacy budget and spend) and their releases:
    what, when, how many patients (rounded to 5), epsilon spent. No patient-level data."""
    releases = await all_releases(conn)
    out = []
    for project, _ in await all_projects(conn):
        own = [
            {k: v for k, v in r.items() if k != "project_id"}
            for r in releases
            if r["project_id"] == project.id
        ]
        out.append(
            project.model_dump(mode="json")
            | {"epsilon_spent": sum(r["epsilon"] for r in own), "releases": own}
        )
    return {"projects": out}


@router.get("/register", response_class=HTMLResponse, include_in_schema=False)
async def register_page() -> HTMLResponse:
    page = (resources.files("dashboard_api") / "static" / "register.html").read_text()
    return HTMLResponse(page)
