"""The clinician dashboard and the AGP report: static HTML and JS from the package (no CDN)."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter(tags=["dashboard"])


def _page(name: str) -> HTMLResponse:
    return HTMLResponse((resources.files("dashboard_api") / "static" / name).read_text())


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def index() -> HTMLResponse:
    return _page("index.html")


@router.get("/agp", response_class=HTMLResponse, include_in_schema=False)
async def agp_report() -> HTMLResponse:
    """The consensus AGP report of one patient (`?patient=ID`), for printing."""
    return _page("agp.html")
