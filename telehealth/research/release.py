"""A release: disclosure-controlled cells for one project, frozen, logged and explained.

One transaction per release, serialised per project (advisory lock): who is eligible *now*
(cohort, then the consent in force now, so a withdrawal drops a patient from everything not
yet released), the raw cells, disclosure control, optional differential privacy, then the
register row, the frozen cells, the contributors (project-keyed pseudonyms with the consent
version that permitted them) and the epsilon charged. Cells released before are returned
as they were, never recomputed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

from telehealth.consent import Purpose, decide_under, in_force
from telehealth.research import dp
from telehealth.research.disclosure import K_MIN, control, round_count
from telehealth.research.projects import Project, cohort_patients
from telehealth.research.pseudonym import pseudonym
from telehealth.storage import releases
from telehealth.storage import research_differencing as differencing
from telehealth.storage.bulk import Columns, copy_in
from telehealth.storage.consent_cache import ConsentCache
from telehealth.storage.research_cells import GroupBy, members, raw_cells
from telehealth.storage.research_hourly import fast_cells, fast_members, rollup_available

Conn = psycopg.AsyncConnection[Any]
_LOCK_CLASS = 7_301_943


@dataclass(frozen=True)
class Ask:
    project: Project
    key: bytes
    kind: str
    code: str
    bucket: timedelta
    start: datetime
    end: datetime
    group_by: GroupBy
    percentiles: list[int]
    released_to: str


@dataclass(frozen=True)
class Outcome:
    release_id: int | None
    epsilon: float
    cells: list[dict[str, Any]]


class BudgetSpent(Exception):
    """The project's epsilon budget, or a contributor's cap across projects, would be exceeded."""


class OutOfScope(Exception):
    """The ask leaves what the project was approved for: its period or its codes."""


def approved_period(project: Project) -> tuple[datetime, datetime]:
    """The project's approved period as [first instant, end) in UTC: starts_on to ends_on inclusive."""
    first = datetime.combine(project.starts_on, datetime.min.time(), UTC)
    return first, datetime.combine(project.ends_on, datetime.min.time(), UTC) + timedelta(days=1)


def check_scope(project: Project, code: str, start: datetime, end: datetime) -> None:
    """The one check every release path passes (aggregates, stream, pull, DP): the code is
    approved and the asked range lies inside the approved period."""
    if code not in project.codes:
        raise OutOfScope(f"project {project.slug} is approved for {', '.join(project.codes)} only")
    first, stop = approved_period(project)
    if start < first or end > stop:
        raise OutOfScope(
            f"project {project.slug} is approved for data from {project.starts_on} to {project.ends_on}"
            f" (UTC); asked {start.isoformat()} to {end.isoformat()}"
        )


async def eligible_now(
    conn: Conn, project: Project, code: str, consent: ConsentCache, *, default_permit: bool
) -> tuple[dict[UUID, int | None], set[UUID]]:
    """Cohort patients whose consent in force now permits the project's purpose for `code`
    (with the version that permits it), and every patient with a consent version in force.
    `consent` is brought up to the consent clock this transaction sees first (fail closed)."""
    await consent.sync(conn)
    now = datetime.now(UTC)
    cohort = await cohort_patients(conn, project.cohort, now.date())
    # every patient's version in force now, found once (the cohort's decisions and `recorded`)
    current = {
        pid: version for pid, history in consent.items() if (version := in_force(history, now)) is not None
    }
    purpose = Purpose(project.purpose)
    out: dict[UUID, int | None] = {}
    for patient_id in cohort:
        d = decide_under(current.get(patient_id), purpose, code, default_permit=default_permit)
        if d.eligible:
            out[patient_id] = d.version
    return out, set(current)


async def _frozen(conn: Conn, ask: Ask) -> list[dict[str, Any]]:
    return await releases.frozen_cells(
        conn, ask.project.id, ask.code, int(ask.bucket.total_seconds()), ask.group_by, ask.start, ask.end
    )


async def release(
    conn: Conn, ask: Ask, consent: ConsentCache, *, default_permit: bool, epsilon_cap: float
) -> Outcome:
    """Released and frozen cells for the asked range, newest computed only where not yet released."""
    check_scope(ask.project, ask.code, ask.start, ask.end)
    async with conn.transaction():
        await releases.lock_project(conn, _LOCK_CLASS, ask.project.id)
        frozen = await _frozen(conn, ask)
        done = {datetime.fromisoformat(b["bucket"]) for b in frozen}
        eligible, recorded = await eligible_now(
            conn, ask.project, ask.code, consent, default_permit=default_permit
        )
        fast = await _rollup_applies(conn, ask)
        if fast:
            # Their rows may be in the rollups (eligible when processed), but not now: taken out.
            excluded = sorted(recorded - set(eligible))
            raw, totals = await fast_cells(
                conn,
                purpose=ask.project.purpose,
                code=ask.code,
                start=ask.start,
                end=ask.end,
                group_by=ask.group_by,
                sexes=list(ask.project.cohort.sex),
                excluded=excluded,
                skip=sorted(done),
            )
        else:
            raw, totals = await raw_cells(
                conn,
                purpose=ask.project.purpose,
                code=ask.code,
                bucket=ask.bucket,
                start=ask.start,
                end=ask.end,
                group_by=ask.group_by,
                patients=list(eligible),
                skip=sorted(done),
            )
        epsilon = ask.project.epsilon_per_release or 0.0
        fresh = [c for c in raw if c.bucket not in done]
        if epsilon:
            # Every cell of the declared grid, empty ones too: which cells exist says nothing.
            grid = [b for b in _buckets(ask) if b not in done]
            fresh = dp.full_grid(fresh, grid, dp.grid_groups(ask.group_by, list(ask.project.cohort.sex)))
        if not fresh:
            return Outcome(None, 0.0, _ordered(frozen))
        if epsilon:
            # Everyone whose data enters the mechanism is charged, suppressed cells included.
            contributors = await _members(conn, ask, fast, eligible, [(c.bucket, c.group) for c in fresh])
            await _charge(conn, ask.project, contributors, epsilon, epsilon_cap)
            buckets = math.ceil((ask.end - ask.start) / ask.bucket)
            bodies = dp.privatise(ask.code, fresh, epsilon, ask.bucket, buckets)
        else:
            # Compared with every cell released before, any project or grouping (one at a time per code).
            await differencing.lock(conn, ask.code)
            who = differencing.Members(
                fast=fast,
                purpose=ask.project.purpose,
                code=ask.code,
                group_by=ask.group_by,
                eligible=list(eligible),
                start=ask.start,
                end=ask.end,
            )
            pairs = await differencing.candidates(
                conn,
                code=ask.code,
                size=ask.bucket,
                cells=[(c.bucket, c.group, c.patients) for c in fresh],
                k=K_MIN,
            )
            near = await differencing.near_duplicates(conn, who, pairs, k=K_MIN)
            cells = control(ask.code, fresh, totals, percentiles=ask.percentiles, hidden_first=near)
            shown = [(c.bucket, c.group) for c in cells if not c.suppressed]
            contributors = await _members(conn, ask, fast, eligible, shown)
            bodies = [c.body for c in cells]
        # A DP release's register entry carries no patient count: the true one is not noised.
        release_id = await _record(conn, ask, bodies, None if epsilon else len(contributors), epsilon)
        await _contributors(conn, ask, release_id, contributors, eligible)
        if not epsilon:
            sizes = {(c.bucket, c.group): c.patients for c in fresh}
            await differencing.record(
                conn,
                who,
                release_id=release_id,
                code=ask.code,
                size=ask.bucket,
                released=[(b, g, sizes[(b, g)]) for b, g in shown],
            )
        if epsilon:
            await releases.record_epsilon(conn, ask.project.id, release_id, epsilon)
    for b in bodies:
        b["release_id"] = release_id
    return Outcome(release_id, epsilon, _ordered(frozen + bodies))


async def _rollup_applies(conn: Conn, ask: Ask) -> bool:
    """Hourly buckets of a cohort defined at most by sex read the cell-level rollups."""
    cohort = ask.project.cohort
    return (
        ask.bucket == timedelta(hours=1)
        and ask.group_by != "condition"
        and not cohort.conditions
        and cohort.age_min is None
        and cohort.age_max is None
        and await rollup_available(conn)
    )


async def _members(
    conn: Conn, ask: Ask, fast: bool, eligible: dict[UUID, int | None], cells: list[tuple[datetime, str]]
) -> list[UUID]:
    if not fast:
        return await members(conn, cells)
    return await fast_members(
        conn,
        purpose=ask.project.purpose,
        code=ask.code,
        group_by=ask.group_by,
        eligible=list(eligible),
        released=cells,
    )


def _ordered(bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(bodies, key=lambda b: (b["bucket"], b["group"]))


async def _charge(conn: Conn, project: Project, contributors: list[UUID], epsilon: float, cap: float) -> None:
    """Refuse once the project's budget or any contributor's cap across projects is spent."""
    spent = await releases.epsilon_spent(conn, project.id)
    assert project.epsilon_budget is not None
    if spent + epsilon > project.epsilon_budget + 1e-9:
        raise BudgetSpent(
            f"project {project.slug} has spent {spent:.3g} of its epsilon budget"
            f" {project.epsilon_budget:.3g}; a release costs {epsilon:.3g}"
        )
    if any(total > cap + 1e-9 for total in await releases.charge_patients(conn, contributors, epsilon)):
        raise BudgetSpent(f"some patients' data would exceed the per-patient epsilon cap {cap:.3g}")


def _buckets(ask: Ask) -> list[datetime]:
    out, at = [], ask.start
    while at < ask.end:
        out.append(at)
        at += ask.bucket
    return out


async def _record(
    conn: Conn, ask: Ask, bodies: list[dict[str, Any]], contributors: int | None, epsilon: float
) -> int:
    release_id = await releases.insert_release(
        conn,
        (
            ask.project.id,
            ask.kind,
            ask.code,
            int(ask.bucket.total_seconds()),
            ask.group_by,
            ask.start,
            ask.end,
            len(bodies),
            None if contributors is None else round_count(contributors),
            epsilon,
            ask.released_to,
        ),
    )
    await releases.copy_cells(
        conn,
        (
            (
                ask.project.id,
                ask.code,
                int(ask.bucket.total_seconds()),
                ask.group_by,
                datetime.fromisoformat(b["bucket"]),
                b["group"],
                Jsonb(b | {"release_id": release_id}),
                release_id,
            )
            for b in bodies
        ),
    )
    return release_id


async def _contributors(
    conn: Conn, ask: Ask, release_id: int, contributors: list[UUID], eligible: dict[UUID, int | None]
) -> None:
    rows = ((release_id, pseudonym(ask.key, p), eligible.get(p)) for p in contributors)
    async with conn.cursor() as cur:
        await copy_in(cur, CONTRIBUTORS, rows)


CONTRIBUTORS = Columns(
    "release_contributors", (("release_id", "int8"), ("pseudonym", "text"), ("consent_version", "int4"))
)
