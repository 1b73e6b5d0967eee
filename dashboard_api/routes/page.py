"""The clinician dashboard page: static HTML and JS, served from the package (no CDN)."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter(tags=["dashboard"])


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def index() -> HTMLResponse:
    page = (resources.files("dashboard_api") / "static" / "index.html").read_text()
    return HTMLResponse(page)
