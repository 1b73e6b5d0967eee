"""A release decides its cohort's consent from the API's in-memory cache, never from a stale one."""

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from telehealth.consent import Provision, Purpose
from telehealth.research.projects import Cohort, ProjectIn, create_project
from telehealth.research.release import eligible_now
from telehealth.storage.consent import save_consent
from telehealth.storage.consent_cache import ConsentCache
from tests.research_support import cohort_patient

GLUCOSE = [Provision(purpose=Purpose.RESEARCH, decision="permit", codes=["glucose"])]


async def test_a_withdrawal_committed_before_a_release_is_seen_without_the_listener(
    db: psycopg.AsyncConnection[Any],
) -> None:
    """No `listen` task runs here: only the clock check inside the release's transaction can
    bring the cache up to date, so a stale cache would still count the withdrawn patient."""
    stays, leaves, never = [await cohort_patient(db, "release-consent") for _ in range(3)]
    for patient in (stays, leaves):
        await save_consent(db, patient, GLUCOSE, False, "admin", "admin", None)
    today = datetime.now(UTC).date()
    project = await create_project(
        db,
        ProjectIn(
            slug=f"release-consent-{datetime.now(UTC).timestamp():.0f}",
            title="consent at release time",
            owner="test",
            purpose=Purpose.RESEARCH,
            codes=["glucose"],
            cohort=Cohort(conditions=["release-consent"]),
            starts_on=today - timedelta(days=1),
            ends_on=today + timedelta(days=1),
        ),
        "test",
    )
    cache = ConsentCache()

    async with db.transaction():
        eligible, recorded = await eligible_now(db, project, "glucose", cache, default_permit=False)
    assert set(eligible) == {stays, leaves}
    assert {stays, leaves} <= recorded and never not in recorded

    await save_consent(db, leaves, [], True, "patient", "patient", None)  # national opt-out
    async with db.transaction():
        eligible, recorded = await eligible_now(db, project, "glucose", cache, default_permit=False)
    assert set(eligible) == {stays}
    assert leaves in recorded  # so the rollups' rows of him are taken out again
    assert eligible[stays] == 1  # the version that permits, cited
