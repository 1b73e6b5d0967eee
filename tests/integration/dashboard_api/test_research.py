"""Research access attacked: row-level paths, consent, suppression, differencing, budget, linkage."""

from __future__ import annotations

import io
from datetime import date, datetime, timedelta
from statistics import mean
from typing import Any

import httpx
import psycopg
import pyarrow.parquet as pq
import pytest

from simulators.publisher import Publisher
from tests.factories import auth, make_user
from tests.research_support import (
    RESEARCH_GLUCOSE,
    closed_hour,
    cohort_patient,
    hourly,
    project_with_researcher,
    publish_glucose,
    put_consent,
)


async def aggregates(http: httpx.AsyncClient, token: str, hour: datetime, **params: Any) -> dict[str, Any]:
    query = {
        "code": "glucose",
        "bucket": "1h",
        "from": hour.isoformat(),
        "to": (hour + timedelta(hours=1)).isoformat(),
    }
    response = await http.get("/api/v1/research/aggregates", params=query | params, headers=auth(token))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def contributors(db: psycopg.AsyncConnection[Any], release_id: int) -> set[str]:
    cur = await db.execute("SELECT pseudonym FROM release_contributors WHERE release_id = %s", (release_id,))
    return {r["pseudonym"] for r in await cur.fetchall()}


async def test_researcher_is_refused_every_row_level_path(
    db: psycopg.AsyncConnection[Any], http: httpx.AsyncClient
) -> None:
    admin = await make_user(db, "admin")
    patient = await cohort_patient(db, "rowlevel")
    _, researcher = await project_with_researcher(http, db, admin, "rowlevel")
    unbound = await make_user(db, "researcher")
    clinician = await make_user(db, "clinician", ["team-rowlevel"])
    paths = [
        ("GET", "/api/v1/patients"),
        ("GET", f"/api/v1/patients/{patient}/observations"),
        ("GET", f"/api/v1/patients/{patient}/observations?bucket=1h"),
        ("GET", f"/api/v1/patients/{patient}/thresholds"),
        ("GET", f"/api/v1/patients/{patient}/consent"),
        ("GET", f"/api/v1/patients/{patient}/consent?format=fhir"),
        ("PUT", f"/api/v1/patients/{patient}/consent"),
        ("GET", f"/api/v1/patients/{patient}/data-uses"),
        ("GET", f"/api/v1/consent/decision?patient_id={patient}&purpose=research&code=glucose"),
        ("GET", "/api/v1/alerts"),
        ("POST", "/api/v1/patients"),
        ("POST", "/api/v1/devices"),
        ("POST", "/api/v1/research/projects"),
    ]
    for method, path in paths:
        response = await http.request(method, path, json={}, headers=auth(researcher))
        assert response.status_code == 403, (method, path, response.status_code, response.text)
    wrong_code = await http.get(
        "/api/v1/research/aggregates", params={"code": "spo2"}, headers=auth(researcher)
    )
    assert wrong_code.status_code == 403 and "approved for glucose" in wrong_code.json()["detail"]
    for token in (unbound, clinician, admin):
        refused = await http.get(
            "/api/v1/research/aggregates", params={"code": "glucose"}, headers=auth(token)
        )
        assert refused.status_code == 403, refused.text
    assert (await http.get("/api/v1/research/aggregates", params={"code": "glucose"})).status_code == 401


async def test_only_consenting_patients_count_and_figures_are_rounded(
    db: psycopg.AsyncConnection[Any], http: httpx.AsyncClient, publisher: Publisher
) -> None:
    admin = await make_user(db, "admin")
    consenting = [await cohort_patient(db, "twelve") for _ in range(12)]
    refusing = [await cohort_patient(db, "twelve") for _ in range(5)]
    for p in consenting:
        await put_consent(http, admin, p, RESEARCH_GLUCOSE)
    for p in refusing[:3]:
        await put_consent(http, admin, p, [{"purpose": "research", "decision": "deny"}])
    # refusing[3:] recorded nothing: the shipped default (deny) applies
    hour = closed_hour(3)
    values = {p: 5.0 + i * 0.25 for i, p in enumerate(consenting)} | {p: 20.0 for p in refusing}
    await publish_glucose(db, publisher, {p: hourly(hour, v) for p, v in values.items()})
    project, researcher = await project_with_researcher(http, db, admin, "twelve")

    body = await aggregates(http, researcher, hour, percentiles="50")
    [cell] = body["cells"]
    assert cell["suppressed"] is False
    assert cell["patients"] == 10  # 12, rounded to the nearest 5 (17 would show as 15)
    assert cell["readings"] == 35  # 36 readings, rounded
    assert cell["mean"] == pytest.approx(mean(values[p] for p in consenting), abs=0.051)
    # no min or max; 12 patients are too few for a median window of 10 with 10 outside it
    assert "max" not in cell and cell["percentiles"] == {}
    assert len(await contributors(db, body["release_id"])) == 12

    register = (await http.get("/api/v1/research/register")).json()
    [mine] = [p for p in register["projects"] if p["slug"] == project["slug"]]
    assert [(r["id"], r["patients_rounded"], r["epsilon"]) for r in mine["releases"]] == [
        (body["release_id"], 10, 0.0)
    ]
    assert "pseudonym_key" not in mine and "pseudonym" not in str(register)
    page = await http.get("/register")
    assert (
        page.status_code == 200 and "/api/v1/research/register" in page.text and "https://" not in page.text
    )

    own = await make_user(db, "patient", patient_id=consenting[0])
    uses = await http.get(f"/api/v1/patients/{consenting[0]}/data-uses", headers=auth(own))
    assert uses.status_code == 200, uses.text
    [use] = uses.json()
    assert use["project"]["slug"] == project["slug"]
    assert [(r["release_id"], r["consent_version"]) for r in use["releases"]] == [(body["release_id"], 1)]
    refuser = await make_user(db, "patient", patient_id=refusing[0])
    assert (await http.get(f"/api/v1/patients/{refusing[0]}/data-uses", headers=auth(refuser))).json() == []
    # another patient's data uses: the answer a missing patient gets
    assert (await http.get(f"/api/v1/patients/{refusing[0]}/data-uses", headers=auth(own))).status_code == 404


async def test_national_opt_out_beats_a_permit(
    db: psycopg.AsyncConnection[Any], http: httpx.AsyncClient, publisher: Publisher
) -> None:
    admin = await make_user(db, "admin")
    permit = [await cohort_patient(db, "optout") for _ in range(11)]
    opted_out = permit.pop()
    for p in permit:
        await put_consent(http, admin, p, RESEARCH_GLUCOSE)
    await put_consent(http, admin, opted_out, RESEARCH_GLUCOSE, opt_out=True)
    hour = closed_hour(3)
    await publish_glucose(db, publisher, {p: hourly(hour, 7.0) for p in [*permit, opted_out]})
    _, researcher = await project_with_researcher(http, db, admin, "optout")
    body = await aggregates(http, researcher, hour)
    assert len(await contributors(db, body["release_id"])) == 10
    decision = await http.get(
        "/api/v1/consent/decision",
        params={"patient_id": str(opted_out), "purpose": "research", "code": "glucose"},
        headers=auth(admin),
    )
    assert decision.json()["decision"] == "deny" and decision.json()["reason"] == "national data opt-out"
    assert (await http.get(f"/api/v1/patients/{opted_out}/data-uses", headers=auth(admin))).json() == []


async def test_small_cells_are_suppressed_and_no_total_undoes_it(
    db: psycopg.AsyncConnection[Any], http: httpx.AsyncClient, publisher: Publisher
) -> None:
    admin = await make_user(db, "admin")
    young = [await cohort_patient(db, "margins", birth=date(1995, 1, 1)) for _ in range(12)]
    middle = [await cohort_patient(db, "margins", birth=date(1975, 1, 1), sex="male") for _ in range(11)]
    old = [await cohort_patient(db, "margins", birth=date(1935, 1, 1), sex="male") for _ in range(4)]
    everyone = young + middle + old
    for p in everyone:
        await put_consent(http, admin, p, RESEARCH_GLUCOSE)
    hour = closed_hour(3)
    await publish_glucose(db, publisher, {p: hourly(hour, 6.0) for p in everyone})
    _, researcher = await project_with_researcher(http, db, admin, "margins")

    total = await aggregates(http, researcher, hour)
    assert [c["patients"] for c in total["cells"]] == [25]  # 27 rounded
    by_age = {c["group"]: c for c in (await aggregates(http, researcher, hour, group_by="age_band"))["cells"]}
    assert set(by_age) == {"18-39", "40-59", "80+"}
    assert by_age["80+"]["suppressed"] and "fewer than 10" in by_age["80+"]["reason"]
    # With only 80+ hidden, total - (18-39) - (40-59) would give it: the smallest other cell goes too.
    assert by_age["40-59"]["suppressed"] and by_age["40-59"]["reason"].startswith("secondary")
    assert not by_age["18-39"]["suppressed"] and by_age["18-39"]["patients"] == 10
    assert all("patients" not in c and "mean" not in c for c in by_age.values() if c["suppressed"])
    # By sex: 15 men (11 + 4) and 12 women, both shown; total - women = 15 men, consistent.
    by_sex = {c["group"]: c for c in (await aggregates(http, researcher, hour, group_by="sex"))["cells"]}
    assert {g: c["suppressed"] for g, c in by_sex.items()} == {"female": False, "male": False}


async def test_differencing_by_one_patient_reveals_nothing(
    db: psycopg.AsyncConnection[Any], http: httpx.AsyncClient, publisher: Publisher
) -> None:
    """Twelve women and one man with an extreme value: the all-patients cell and the women's cell
    differ by exactly him, so the women's cell is withheld; after he withdraws, asking again
    returns the frozen cells rather than a new figure without him."""
    admin = await make_user(db, "admin")
    women = [await cohort_patient(db, "diff") for _ in range(12)]
    him = await cohort_patient(db, "diff", sex="male")
    for p in [*women, him]:
        await put_consent(http, admin, p, RESEARCH_GLUCOSE)
    hour = closed_hour(3)
    await publish_glucose(db, publisher, {p: hourly(hour, 6.0) for p in women} | {him: hourly(hour, 30.0)})
    _, researcher = await project_with_researcher(http, db, admin, "diff")

    everyone = (await aggregates(http, researcher, hour))["cells"]
    by_sex = (await aggregates(http, researcher, hour, group_by="sex"))["cells"]
    assert [c["suppressed"] for c in everyone] == [False]
    assert all(c["suppressed"] for c in by_sex), by_sex
    assert {c["group"] for c in by_sex} == {"female", "male"}

    mine = await make_user(db, "patient", patient_id=him)
    await put_consent(http, mine, him, [])  # withdraws
    again = (await aggregates(http, researcher, hour))["cells"]
    assert again == everyone  # frozen: the same figures, not a 12-patient figure to subtract
    by_sex_again = (await aggregates(http, researcher, hour, group_by="sex"))["cells"]
    assert by_sex_again == by_sex
    # A 3-hour cell holding this hour could be compared with it: the project has one bucket size.
    nested = await http.get(
        "/api/v1/research/aggregates",
        params={"code": "glucose", "bucket": "3h", "from": hour.isoformat()},
        headers=auth(researcher),
    )
    assert nested.status_code == 403 and "1 h buckets only" in nested.json()["detail"]


async def test_budget_refuses_once_spent(
    db: psycopg.AsyncConnection[Any], http: httpx.AsyncClient, publisher: Publisher
) -> None:
    admin = await make_user(db, "admin")
    cohort = [await cohort_patient(db, "budget") for _ in range(30)]
    for p in cohort:
        await put_consent(http, admin, p, RESEARCH_GLUCOSE)
    hours = [closed_hour(h) for h in (3, 4, 5)]
    await publish_glucose(
        db, publisher, {p: [r for h in hours for r in hourly(h, 6.0 + i % 5)] for i, p in enumerate(cohort)}
    )
    project, researcher = await project_with_researcher(http, db, admin, "budget", epsilon=(1.0, 2.0))

    first = await aggregates(http, researcher, hours[0])
    assert first["epsilon"] == 1.0 and all(c["epsilon"] == 1.0 for c in first["cells"])
    cell = first["cells"][0]
    assert "min" not in cell and "max" not in cell  # never released
    # Each noisy figure: scale = sensitivity / (epsilon / 4); one bucket here; the median private.
    if not cell["suppressed"]:
        assert cell["noise_scale"]["patients"] == pytest.approx(4.0)
        assert set(cell["percentiles"]) == {"p50"}
    repeat = await aggregates(http, researcher, hours[0])
    assert repeat["cells"] == first["cells"] and repeat["release_id"] is None  # frozen: costs nothing
    second = await aggregates(http, researcher, hours[1])
    assert second["epsilon"] == 1.0
    refused = await http.get(
        "/api/v1/research/aggregates",
        params={"code": "glucose", "from": hours[2].isoformat(), "to": hours[0].isoformat()},
        headers=auth(researcher),
    )
    assert refused.status_code == 403 and "budget" in refused.json()["detail"], refused.text
    register = (await http.get("/api/v1/research/register")).json()
    [mine] = [p for p in register["projects"] if p["slug"] == project["slug"]]
    assert mine["epsilon_spent"] == 2.0 and [r["epsilon"] for r in mine["releases"]] == [1.0, 1.0]
    cur = await db.execute("SELECT spent FROM patient_epsilon WHERE patient_id = %s", (cohort[0],))
    assert await cur.fetchone() == {"spent": 2.0}


async def test_pseudonyms_differ_between_projects(
    db: psycopg.AsyncConnection[Any], http: httpx.AsyncClient, publisher: Publisher
) -> None:
    admin = await make_user(db, "admin")
    cohort = [await cohort_patient(db, "linkage") for _ in range(10)]
    for p in cohort:
        await put_consent(http, admin, p, RESEARCH_GLUCOSE)
    hour = closed_hour(3)
    await publish_glucose(db, publisher, {p: hourly(hour, 6.0) for p in cohort})
    _, first = await project_with_researcher(http, db, admin, "linkage", slug="linkage-a")
    _, second = await project_with_researcher(http, db, admin, "linkage", slug="linkage-b")
    a = await contributors(db, (await aggregates(http, first, hour))["release_id"])
    b = await contributors(db, (await aggregates(http, second, hour))["release_id"])
    assert len(a) == len(b) == 10 and not a & b
    uses = (await http.get(f"/api/v1/patients/{cohort[0]}/data-uses", headers=auth(admin))).json()
    assert sorted(u["project"]["slug"] for u in uses) == ["linkage-a", "linkage-b"]


async def test_stream_releases_each_bucket_once_and_a_withdrawal_drops_the_patient(
    db: psycopg.AsyncConnection[Any], http: httpx.AsyncClient, publisher: Publisher
) -> None:
    admin = await make_user(db, "admin")
    cohort = [await cohort_patient(db, "stream") for _ in range(13)]
    for p in cohort:
        await put_consent(http, admin, p, RESEARCH_GLUCOSE)
    first_hour, second_hour = closed_hour(4), closed_hour(3)
    # Both hours are processed (and eligible) before anyone withdraws.
    await publish_glucose(
        db, publisher, {p: hourly(first_hour, 6.0) + hourly(second_hour, 7.0) for p in cohort}
    )
    project, researcher = await project_with_researcher(http, db, admin, "stream")

    async def pull(cursor: str | None, fmt: str = "ndjson") -> httpx.Response:
        params = {"code": "glucose", "format": fmt, "max_buckets": 1}
        response = await http.get(
            "/api/v1/research/stream",
            params=params | ({"cursor": cursor} if cursor else {}),
            headers=auth(researcher),
        )
        assert response.status_code == 200, response.text
        return response

    one = await pull(first_hour.isoformat(), "parquet")
    table = pq.read_table(io.BytesIO(one.content)).to_pylist()
    assert [(r["bucket"], r["patients"]) for r in table] == [(first_hour, 15)]  # 13, rounded
    release_one = int(one.headers["X-Release-Id"])
    assert datetime.fromisoformat(one.headers["X-Next-Cursor"]) == second_hour

    leaver = cohort[0]
    await put_consent(http, admin, leaver, [])
    two = await pull(one.headers["X-Next-Cursor"], "csv")
    lines = two.text.splitlines()
    assert lines[0].startswith("bucket,group,suppressed,reason,patients,readings,mean")
    assert lines[1].split(",")[4] == "10"  # 12 now
    release_two = int(two.headers["X-Release-Id"])
    assert len(await contributors(db, release_one)) == 13 and len(await contributors(db, release_two)) == 12

    uses = (await http.get(f"/api/v1/patients/{leaver}/data-uses", headers=auth(admin))).json()
    assert [r["release_id"] for u in uses for r in u["releases"]] == [release_one]
    stayer = (await http.get(f"/api/v1/patients/{cohort[1]}/data-uses", headers=auth(admin))).json()
    assert [r["release_id"] for u in stayer for r in u["releases"]] == [release_one, release_two]

    again = await pull(first_hour.isoformat())  # an old cursor: the same release, not a new one
    assert again.headers["X-Release-Id"] == "" and '"patients": 15' in again.text
    register = (await http.get("/api/v1/research/register")).json()
    [mine] = [p for p in register["projects"] if p["slug"] == project["slug"]]
    assert [(r["kind"], r["patients_rounded"]) for r in mine["releases"]] == [("stream", 15), ("stream", 10)]
