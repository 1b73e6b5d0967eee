"""Every release path keeps to the project's approved period and codes (one check)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg

from simulators.publisher import Publisher
from tests.factories import auth, make_user
from tests.research_support import (
    RESEARCH_GLUCOSE,
    cohort_patient,
    project_with_researcher,
    publish_glucose,
    put_consent,
)


async def test_a_project_approved_from_today_gets_nothing_from_yesterday(
    db: psycopg.AsyncConnection[Any], http: httpx.AsyncClient, publisher: Publisher
) -> None:
    """Attack: ask /aggregates (plain and DP) for an hour before the approved start date."""
    admin = await make_user(db, "admin")
    cohort = [await cohort_patient(db, "scope") for _ in range(12)]
    for p in cohort:
        await put_consent(http, admin, p, RESEARCH_GLUCOSE)
    today = datetime.now(UTC).date()
    yesterday = datetime.combine(today, datetime.min.time(), UTC) - timedelta(hours=12)
    await publish_glucose(
        db, publisher, {p: [(yesterday + timedelta(minutes=m), 6.0) for m in (5, 20, 40)] for p in cohort}
    )
    plain = await project_with_researcher(http, db, admin, "scope", slug="scope-plain", starts_on=today)
    private = await project_with_researcher(
        http, db, admin, "scope", slug="scope-dp", starts_on=today, epsilon=(1.0, 5.0)
    )
    for _, token in (plain, private):
        asked = await http.get(
            "/api/v1/research/aggregates",
            params={
                "code": "glucose",
                "from": yesterday.isoformat(),
                "to": (yesterday + timedelta(hours=1)).isoformat(),
            },
            headers=auth(token),
        )
        assert asked.status_code == 403, asked.text
        assert f"from {today}" in asked.json()["detail"]
        # The stream starts at the approved start whatever cursor is given.
        streamed = await http.get(
            "/api/v1/research/stream",
            params={"code": "glucose", "cursor": yesterday.isoformat()},
            headers=auth(token),
        )
        assert streamed.status_code == 200, streamed.text
        assert datetime.fromisoformat(streamed.headers["X-Next-Cursor"]) >= datetime.combine(
            today, datetime.min.time(), UTC
        )
        assert yesterday.isoformat() not in streamed.text
        # The default range (no from) is clipped to the approved period rather than refused.
        default = await http.get(
            "/api/v1/research/aggregates", params={"code": "glucose"}, headers=auth(token)
        )
        assert default.status_code in (200, 422), default.text
        if default.status_code == 200:
            assert datetime.fromisoformat(default.json()["from"]) >= datetime.combine(
                today, datetime.min.time(), UTC
            )
    register = (await http.get("/api/v1/research/register")).json()
    mine = [p for p in register["projects"] if p["slug"] in ("scope-plain", "scope-dp")]
    assert all(r["period_start"] >= str(today) for p in mine for r in p["releases"])
