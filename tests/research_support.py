"""Test helpers for consent and research: cohorts, consent, readings through the real pipeline."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import psycopg

from simulators.cohort import nhs_number_for
from simulators.publisher import Publisher
from telehealth.storage.people import add_patient, add_user, issue_token
from tests.conftest import eventually
from tests.factories import auth, make_device, make_user

_counter = itertools.count(70_000)
RESEARCH_GLUCOSE = [{"purpose": "research", "decision": "permit", "codes": ["glucose"]}]


async def cohort_patient(
    db: psycopg.AsyncConnection[Any], tag: str, *, sex: str = "female", birth: date = date(1980, 6, 1)
) -> UUID:
    """A patient whose only condition is `tag`, so a project's cohort selects exactly its test's patients."""
    i = next(_counter)
    row = await add_patient(
        db,
        nhs_number=nhs_number_for(i),
        name=f"Research Patient {i}",
        birth_date=birth,
        sex=sex,
        conditions=[tag],
        care_team=f"team-{tag}",
    )
    patient_id: UUID = row["id"]
    return patient_id


async def put_consent(
    http: httpx.AsyncClient,
    token: str,
    patient: UUID,
    provisions: list[dict[str, Any]],
    *,
    opt_out: bool = False,
) -> dict[str, Any]:
    response = await http.put(
        f"/api/v1/patients/{patient}/consent",
        json={"provisions": provisions, "national_opt_out": opt_out},
        headers=auth(token),
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def closed_hour(hours_ago: int) -> datetime:
    """Start of a whole UTC hour that ended well before the default watermark (1 h)."""
    now = datetime.now(UTC)
    return now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours_ago)


async def publish_glucose(
    db: psycopg.AsyncConnection[Any],
    publisher: Publisher,
    readings: dict[UUID, list[tuple[datetime, float]]],
) -> dict[UUID, str]:
    """Provision a CGM per patient, publish its readings, wait until every one has its consent decision."""
    devices = {}
    total = 0
    for patient, series in readings.items():
        device = await make_device(db, patient, "cgm")
        devices[patient] = device.device_id
        for seq, (at, value) in enumerate(series, start=1):
            publisher.publish_reading(
                device.device_id,
                seq,
                [{"code": "glucose", "value": value, "unit": "mmol/L", "source": "cgm"}],
                measured_at=at,
            )
            total += 1
    assert await publisher.drain()

    async def decided() -> bool:
        cur = await db.execute(
            "SELECT count(*) AS n FROM reading_consent WHERE device_id = ANY(%s)", (list(devices.values()),)
        )
        row = await cur.fetchone()
        return row is not None and row["n"] == total

    await eventually(decided)
    return devices


async def project_with_researcher(
    http: httpx.AsyncClient,
    db: psycopg.AsyncConnection[Any],
    admin: str,
    tag: str,
    *,
    slug: str | None = None,
    codes: tuple[str, ...] = ("glucose",),
    epsilon: tuple[float, float] | None = None,
    starts_on: date | None = None,
    purpose: str = "research",
    cohort: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], str]:
    """An active project whose cohort is the patients tagged `tag`, and a researcher token bound to it."""
    today = datetime.now(UTC).date()
    body: dict[str, Any] = {
        "slug": slug or f"p-{tag}",
        "title": f"Study {tag}",
        "owner": "University of Testing",
        "purpose": purpose,
        "codes": list(codes),
        "cohort": {"conditions": [tag]} | (cohort or {}),
        "starts_on": str(starts_on or today - timedelta(days=30)),
        "ends_on": str(today + timedelta(days=30)),
    }
    if epsilon:
        body |= {"epsilon_per_release": epsilon[0], "epsilon_budget": epsilon[1]}
    created = await http.post("/api/v1/research/projects", json=body, headers=auth(admin))
    assert created.status_code == 201, created.text
    project: dict[str, Any] = created.json()
    user = await add_user(db, f"researcher-{next(_counter)}", "researcher", project_id=project["id"])
    return project, await issue_token(db, user.id)


async def admin_token(db: psycopg.AsyncConnection[Any]) -> str:
    return await make_user(db, "admin")


def hourly(hour: datetime, value: float) -> list[tuple[datetime, float]]:
    """Three readings of one value inside an hour (a cell's worth for one patient)."""
    return [(hour + timedelta(minutes=m), value) for m in (5, 20, 40)]
