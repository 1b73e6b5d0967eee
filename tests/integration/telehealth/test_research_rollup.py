"""The cell-level rollups (the fast path for hourly aggregates) against the per-patient scan."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import httpx
import psycopg

from simulators.publisher import Publisher
from telehealth.research.disclosure import RawCell
from telehealth.storage.releases import insert_release
from telehealth.storage.research_cells import members, raw_cells
from telehealth.storage.research_differencing import Members, record
from telehealth.storage.research_hourly import fast_cells, fast_members
from tests.factories import make_device, make_user
from tests.research_support import (
    RESEARCH_GLUCOSE,
    closed_hour,
    cohort_patient,
    project_with_researcher,
    put_consent,
)


def _key(cells: list[RawCell]) -> list[tuple[Any, ...]]:
    return sorted(
        (
            c.bucket,
            c.group,
            c.patients,
            c.readings,
            round(c.mean, 6),
            c.histogram,
        )
        for c in cells
    )


async def _new_bits(
    db: psycopg.AsyncConnection[Any], members: Members, hours: list[datetime]
) -> set[tuple[Any, ...]]:
    """The release's member bitmaps, limited to the given hours."""
    masks: dict[Any, int] = {}
    for h in hours:
        masks[h.date()] = masks.get(h.date(), 0) | (1 << h.hour)
    sql, params = members.query()
    cur = await db.execute(sql.encode(), params)
    return {
        (r["grp"], r["day"], r["patient_id"], r["hours"] & masks.get(r["day"], 0))
        for r in await cur.fetchall()
        if r["hours"] & masks.get(r["day"], 0)
    }


async def _recorded(
    db: psycopg.AsyncConnection[Any],
    project_id: int,
    members: Members,
    released: list[tuple[datetime, str, int]],
) -> set[tuple[Any, ...]]:
    """What a checked release of `released` keeps for later differencing: (group, day, patient,
    hours) per member."""
    release_id = await insert_release(
        db,
        (project_id, "aggregates", "glucose", 3600, members.group_by, members.start, members.end,
         len(released), None, 0.0, "test"),
    )  # fmt: skip
    await record(
        db, members, release_id=release_id, code="glucose", size=timedelta(hours=1), released=released
    )
    cur = await db.execute(
        "SELECT grp, day, patients, hours FROM research_released_members WHERE release_id = %s", (release_id,)
    )
    return {
        (r["grp"], r["day"], p, h)
        for r in await cur.fetchall()
        for p, h in zip(r["patients"], r["hours"], strict=True)
    }


def _binned(cells: list[RawCell]) -> list[RawCell]:
    """The scan's cells (its histogram is binned at the released precision, as the rollup's)."""
    return cells


async def test_rollup_cells_equal_the_per_patient_scan(
    db: psycopg.AsyncConnection[Any], http: httpx.AsyncClient, publisher: Publisher
) -> None:
    admin = await make_user(db, "admin")
    # Hours no other test writes to. The rollups hold everyone's research readings, so another
    # test's readings in these hours would be counted here: test_research_scope writes at noon
    # yesterday (12-36 h ago), which 29-30 h ago met whenever the suite ran at 17-19 h UTC.
    hours = [closed_hour(38), closed_hour(37)]
    people = [
        await cohort_patient(
            db, "rollup", sex="male" if i % 3 == 0 else "female", birth=date(1950 + 5 * i, 1, 1)
        )
        for i in range(14)
    ]
    withdrawn, silent = people[0], people[1]
    for p in [*people[2:], withdrawn]:
        await put_consent(http, admin, p, RESEARCH_GLUCOSE)
    devices = {p: (await make_device(db, p, "cgm")).device_id for p in people}
    seqs = {p: 0 for p in people}

    async def send(minute: int, value_of: Any) -> None:
        for i, p in enumerate(people):
            for h in hours:
                seqs[p] += 1
                publisher.publish_reading(
                    devices[p], seqs[p],
                    [{"code": "glucose", "value": value_of(i, h), "unit": "mmol/L", "source": "cgm"}],
                    measured_at=h + timedelta(minutes=minute),
                )  # fmt: skip
        assert await publisher.drain()
        total = sum(seqs.values())

        async def all_decided() -> bool:
            cur = await db.execute(
                "SELECT count(*) AS n FROM reading_consent WHERE device_id = ANY(%s)",
                (list(devices.values()),),
            )
            row = await cur.fetchone()
            return row is not None and row["n"] == total

        from tests.conftest import eventually

        await eventually(all_decided)

    # Two rounds in separate batches: the second changes every patient's hourly mean, so the
    # rollup must take out each old mean and put in the new one.
    await send(10, lambda i, h: 4.0 + 0.37 * i)
    await send(40, lambda i, h: 6.0 + 0.11 * i * (1 + h.hour % 2))
    patient_token = await make_user(db, "patient", patient_id=withdrawn)
    await put_consent(http, patient_token, withdrawn, [])

    eligible = [p for p in people if p not in (withdrawn, silent)]
    women_ids = {p for i, p in enumerate(people) if p in eligible and i % 3 != 0}
    project, _ = await project_with_researcher(http, db, admin, "rollup")
    common = {
        "purpose": "research",
        "code": "glucose",
        "start": hours[0],
        "end": hours[1] + timedelta(hours=1),
    }
    for group_by in ("none", "sex", "age_band"):
        async with db.transaction():
            scan, scan_totals = await raw_cells(
                db, bucket=timedelta(hours=1), group_by=group_by, patients=eligible,  # type: ignore[arg-type]
                **common,  # type: ignore[arg-type]
            )  # fmt: skip
            # contributors to the cells of the first hour only
            first_hour = [(c.bucket, c.group) for c in scan if c.bucket == hours[0]]
            scanned_members = set(await members(db, first_hour))
            member_args = {
                "purpose": "research", "code": "glucose", "group_by": group_by, "eligible": eligible,
                "start": common["start"], "end": common["end"],
            }  # fmt: skip
            scanned = await _new_bits(db, Members(fast=False, **member_args), hours)  # type: ignore[arg-type]
        fast = await _new_bits(db, Members(fast=True, **member_args), hours)  # type: ignore[arg-type]
        assert fast == scanned != set(), group_by
        # What is kept for later differencing, from either source: the released cells' members
        # with only the released hours (the women's cell alone, by sex: the men are not kept).
        async with db.transaction(force_rollback=True):
            scan, _ = await raw_cells(
                db, bucket=timedelta(hours=1), group_by=group_by, patients=eligible,  # type: ignore[arg-type]
                **common,  # type: ignore[arg-type]
            )  # fmt: skip
            released = [(c.bucket, c.group, c.patients) for c in scan if c.bucket == hours[0]]
            if group_by == "sex":
                released = [r for r in released if r[1] == "female"]
            by_scan = await _recorded(db, project["id"], Members(fast=False, **member_args), released)  # type: ignore[arg-type]
            by_rollup = await _recorded(db, project["id"], Members(fast=True, **member_args), released)  # type: ignore[arg-type]
        assert by_scan == by_rollup, group_by
        kept = women_ids if group_by == "sex" else set(eligible)
        assert {p for _, _, p, _ in by_scan} == kept and len(by_scan) == len(kept), group_by
        assert {(d, h) for _, d, _, h in by_scan} == {(hours[0].date(), 1 << hours[0].hour)}, group_by
        fast_members_ = await fast_members(
            db, purpose="research", code="glucose", group_by=group_by,  # type: ignore[arg-type]
            eligible=eligible, released=first_hour,
        )  # fmt: skip
        assert set(fast_members_) == scanned_members == set(eligible), group_by
        if group_by == "sex":  # only the women's cell released: only women contributed
            women = await fast_members(
                db, purpose="research", code="glucose", group_by="sex", eligible=eligible,
                released=[(b, g) for b, g in first_hour if g == "female"],
            )  # fmt: skip
            assert set(women) == {p for i, p in enumerate(people) if p in eligible and i % 3 != 0}
        fast, fast_totals = await fast_cells(
            db, group_by=group_by, sexes=[], excluded=[withdrawn],  # type: ignore[arg-type]
            **common,  # type: ignore[arg-type]
        )  # fmt: skip
        assert scan, "the scan found no cells: the test's readings are missing"
        assert _key(fast) == _key(_binned(scan)), group_by
        assert fast_totals == scan_totals == {h: 12 for h in hours}

        # With nobody to take out, the histograms are read as stored where their rows are the
        # asked cells' bins already: the same as the scan of everyone with rollup rows.
        async with db.transaction():
            everyone, _ = await raw_cells(
                db, bucket=timedelta(hours=1), group_by=group_by, patients=[*eligible, withdrawn],  # type: ignore[arg-type]
                **common,  # type: ignore[arg-type]
            )  # fmt: skip
        as_stored, _ = await fast_cells(
            db, group_by=group_by, sexes=[], excluded=[],  # type: ignore[arg-type]
            **common,  # type: ignore[arg-type]
        )  # fmt: skip
        assert _key(as_stored) == _key(_binned(everyone)), group_by
        assert _key(as_stored) != _key(fast), "the withdrawn patient changed nothing: a weak test"

    # A cohort of women only, ungrouped: the per-sex histogram summed over the one sex asked
    # (the withdrawn patient is a man, so taking him out changes nothing here).
    women = [p for i, p in enumerate(people) if p in eligible and i % 3 != 0]
    async with db.transaction():
        scan, _ = await raw_cells(
            db, bucket=timedelta(hours=1), group_by="none", patients=women,
            **common,  # type: ignore[arg-type]
        )  # fmt: skip
    assert scan and all(c.patients == len(women) for c in scan)
    for excluded in ([withdrawn], []):
        fast, _ = await fast_cells(
            db, group_by="none", sexes=["female"], excluded=excluded,
            **common,  # type: ignore[arg-type]
        )  # fmt: skip
        assert _key(fast) == _key(_binned(scan)), excluded
