"""`telehealth users add --role researcher` and `telehealth research pull`, run as a researcher would."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pyarrow.dataset as ds

from simulators.publisher import Publisher
from telehealth.settings import Settings
from tests.commands import telehealth
from tests.factories import make_user
from tests.research_support import RESEARCH_GLUCOSE, closed_hour, cohort_patient, publish_glucose, put_consent


async def test_pull_writes_parquet_keeps_its_cursor_and_resumes(
    db: psycopg.AsyncConnection[Any],
    http: httpx.AsyncClient,
    publisher: Publisher,
    settings: Settings,
    api_url: str,
    tmp_path: Path,
) -> None:
    admin = await make_user(db, "admin")
    cohort = [await cohort_patient(db, "pull") for _ in range(11)]
    for p in cohort:
        await put_consent(http, admin, p, RESEARCH_GLUCOSE)
    hours = [closed_hour(5), closed_hour(4)]
    await publish_glucose(db, publisher, {p: [(h.replace(minute=10), 6.0) for h in hours] for p in cohort})
    created = await http.post(
        "/api/v1/research/projects",
        json={
            "slug": "pull-study",
            "title": "Pull study",
            "owner": "Dr Example",
            "purpose": "research",
            "codes": ["glucose"],
            "cohort": {"conditions": ["pull"]},
            "starts_on": str(hours[0].date()),
            "ends_on": str(hours[0].date().replace(year=hours[0].year + 1)),
        },
        headers={"Authorization": f"Bearer {admin}"},
    )
    assert created.status_code == 201, created.text
    refused = telehealth(settings, "users", "add", "--username", "r-pull", "--role", "researcher")
    assert refused.returncode != 0 and "--project-id" in refused.stderr
    added = telehealth(
        settings, "users", "add", "--username", "r-pull", "--role", "researcher",
        "--project-id", str(created.json()["id"]),
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip().splitlines()[-1]
    out = tmp_path / "pulled"
    args = ("research", "pull", "--project", "pull-study", "--code", "glucose", "--format", "parquet")

    def run() -> Any:
        return telehealth(settings, *args, "--out", str(out), "--api", api_url, "--token", token)

    first = await asyncio.to_thread(run)
    assert first.returncode == 0, first.stderr
    table = ds.dataset(out, format="parquet").to_table().to_pylist()
    assert [(r["bucket"], r["patients"]) for r in table] == [(hours[0], 10), (hours[1], 10)]
    assert (out / ".cursor-pull-study-glucose").exists()
    second = await asyncio.to_thread(run)  # resumes at the saved cursor: nothing new
    assert second.returncode == 0 and second.stdout.startswith("0 file(s)"), second.stdout
    wrong = telehealth(settings, "research", "pull", "--project", "other", "--code", "glucose",
                       "--out", str(out), "--api", api_url, "--token", token)  # fmt: skip
    assert wrong.returncode != 0 and "bound to project 'pull-study'" in wrong.stderr
