"""Research: project registration (admin), disclosure-controlled aggregates and streams
(researcher, within their one project), and the public register of projects and releases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, Depends, HTTPException, Query, Response, status
from pydantic import BaseModel

from dashboard_api.deps import AdminUser, ConnDep, ConsentDep, CurrentUser, SettingsDep
from dashboard_api.routes.patients import parse_bucket
from telehealth.research import export
from telehealth.research.disclosure import QUARTILES
from telehealth.research.projects import Project, ProjectIn, create_project, get_project
from telehealth.research.release import Ask, BudgetSpent, OutOfScope, approved_period, release
from telehealth.settings import Settings
from telehealth.storage.consent_cache import ConsentCache
from telehealth.storage.research_cells import GroupBy

router = APIRouter(prefix="/api/v1/research", tags=["research"])

MAX_BUCKETS = 24 * 400
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ResearchContext(BaseModel):
    project: Project
    key: bytes
    username: str


async def researcher(conn: ConnDep, user: CurrentUser) -> ResearchContext:
    """The caller's one project, active today; anything else is refused."""
    if user.role != "researcher":
        raise HTTPException(403, f"research data is for researchers bound to a project; you are {user.role}")
    found = await get_project(conn, user.project_id) if user.project_id is not None else None
    if found is None:
        raise HTTPException(403, "this researcher token is not bound to a research project")
    project, key = found
    today = datetime.now(UTC).date()
    if not project.starts_on <= today <= project.ends_on:
        raise HTTPException(403, f"project {project.slug} runs {project.starts_on} to {project.ends_on}")
    return ResearchContext(project=project, key=key, username=user.username)


Researcher = Annotated[ResearchContext, Depends(researcher)]


def floor_to(at: datetime, bucket: timedelta) -> datetime:
    return EPOCH + ((at - EPOCH) // bucket) * bucket


def first_bucket(project: Project, size: timedelta) -> datetime:
    """Start of the first whole bucket inside the approved period."""
    start = approved_period(project)[0]
    floored = floor_to(start, size)
    return floored if floored == start else floored + size


def horizon(bucket: timedelta, watermark_s: float) -> datetime:
    """End of the last bucket closed for at least the watermark delay."""
    return floor_to(datetime.now(UTC) - timedelta(seconds=watermark_s), bucket)


def _check_code(ctx: ResearchContext, code: str) -> None:
    if code not in ctx.project.codes:
        approved = ", ".join(ctx.project.codes)
        raise HTTPException(403, f"project {ctx.project.slug} is approved for {approved} only")


def _percentiles(text: str) -> list[int]:
    """A subset of the quartiles: any other percentile (and min or max) sits at or near one
    patient's value, so it is never released."""
    allowed = ", ".join(str(q) for q in QUARTILES)
    try:
        values = sorted({int(p) for p in text.split(",") if p.strip()})
    except ValueError as exc:
        raise HTTPException(422, f"percentiles are a subset of {allowed}") from exc
    if not values or not set(values) <= set(QUARTILES):
        raise HTTPException(
            422, f"percentiles are a subset of {allowed}: others would reveal single patients"
        )
    return values


async def _release(
    conn: psycopg.AsyncConnection[Any],
    settings: Settings,
    consent: ConsentCache,
    ctx: ResearchContext,
    ask: Ask,
) -> Any:
    if ctx.project.epsilon_per_release and ask.group_by == "condition":
        raise HTTPException(422, "differentially private releases cannot group by condition")
    try:
        return await release(
            conn,
            ask,
            consent,
            default_permit=settings.consent_default == "permit",
            epsilon_cap=settings.epsilon_cap_per_patient,
        )
    except BudgetSpent as exc:
        raise HTTPException(403, f"privacy budget spent: {exc}") from exc
    except OutOfScope as exc:
        raise HTTPException(403, str(exc)) from exc


@router.post("/projects", status_code=status.HTTP_201_CREATED)
async def register_project(body: ProjectIn, conn: ConnDep, user: AdminUser) -> Project:
    try:
        return await create_project(conn, body, user.username)
    except psycopg.errors.UniqueViolation as exc:
        raise HTTPException(409, f"a project {body.slug!r} exists already") from exc


@router.get("/project")
async def my_project(ctx: Researcher) -> Project:
    """The caller's project: purpose, approved codes, cohort, dates, privacy budget."""
    return ctx.project


@router.get("/aggregates")
async def aggregates(
    conn: ConnDep,
    settings: SettingsDep,
    consent: ConsentDep,
    ctx: Researcher,
    code: str,
    bucket: Annotated[str | None, Query(description="the project's bucket size (default), e.g. 1h")] = None,
    from_: Annotated[datetime | None, Query(alias="from")] = None,
    to: datetime | None = None,
    group_by: GroupBy = "none",
    percentiles: Annotated[str, Query(description="comma-separated subset of 25,50,75")] = "25,50,75",
) -> dict[str, Any]:
    """Disclosure-controlled cells per closed bucket and cohort group, from eligible readings only."""
    _check_code(ctx, code)
    size = timedelta(hours=ctx.project.bucket_hours)
    if bucket is not None and parse_bucket(bucket) != size:
        # Cells of two sizes nest (an hour inside a day); comparing them could isolate a patient.
        raise HTTPException(
            403, f"project {ctx.project.slug} is approved for {ctx.project.bucket_hours} h buckets only"
        )
    closed = horizon(size, settings.research_watermark_s)
    end = min(to or closed, closed)
    # The default week never reaches before the approved period; an explicit `from` that does is refused.
    start = from_ or max(end - timedelta(days=7), first_bucket(ctx.project, size))
    if start.tzinfo is None or end.tzinfo is None:
        raise HTTPException(422, "from and to need a UTC offset, e.g. 2026-11-23T08:00:00Z")
    start, end = floor_to(start, size), floor_to(end + size - timedelta(microseconds=1), size)
    end = min(end, closed)
    if start >= end:
        delay = settings.research_watermark_s
        raise HTTPException(422, f"no closed bucket in range; buckets close {delay:.0f}s after they end")
    if (end - start) / size > MAX_BUCKETS:
        raise HTTPException(422, f"at most {MAX_BUCKETS} buckets per request")
    ask = Ask(
        ctx.project,
        ctx.key,
        "aggregates",
        code,
        size,
        start,
        end,
        group_by,
        _percentiles(percentiles),
        ctx.username,
    )
    outcome = await _release(conn, settings, consent, ctx, ask)
    return {
        "project": ctx.project.slug,
        "purpose": ctx.project.purpose,
        "code": code,
        "bucket": f"{ctx.project.bucket_hours}h",
        "from": start,
        "to": end,
        "group_by": group_by,
        "release_id": outcome.release_id,
        "epsilon": outcome.epsilon,
        "cells": outcome.cells,
    }


@router.get("/stream")
async def stream(
    conn: ConnDep,
    settings: SettingsDep,
    consent: ConsentDep,
    ctx: Researcher,
    code: str,
    cursor: Annotated[datetime | None, Query(description="next_cursor of the previous pull")] = None,
    format: Literal["ndjson", "csv", "parquet"] = "ndjson",
    group_by: GroupBy = "none",
    max_buckets: Annotated[int, Query(ge=1, le=168, description="buckets per pull")] = 168,
) -> Response:
    """Closed buckets of the project's size from the cursor on (up to 168 per pull), each released
    once after the watermark delay; `X-Next-Cursor` says where the next pull starts."""
    size = timedelta(hours=ctx.project.bucket_hours)
    _check_code(ctx, code)
    project_start, project_end = approved_period(ctx.project)
    if cursor is not None and cursor.tzinfo is None:
        raise HTTPException(422, "cursor needs a UTC offset")
    start = max(floor_to(cursor or project_start, size), first_bucket(ctx.project, size))
    end = min(
        start + size * max_buckets, horizon(size, settings.research_watermark_s), floor_to(project_end, size)
    )
    cells: list[dict[str, Any]] = []
    release_id, epsilon = None, 0.0
    if start < end:
        ask = Ask(
            ctx.project,
            ctx.key,
            "stream",
            code,
            size,
            start,
            end,
            group_by,
            list(QUARTILES),
            ctx.username,
        )
        outcome = await _release(conn, settings, consent, ctx, ask)
        cells, release_id, epsilon = outcome.cells, outcome.release_id, outcome.epsilon
    body, media = export.encode(cells, format)
    headers = {
        "X-Next-Cursor": max(start, end).isoformat(),
        "X-Release-Id": str(release_id or ""),
        "X-Epsilon": str(epsilon),
        "X-Cells": str(len(cells)),
    }
    return Response(body, media_type=media, headers=headers)
