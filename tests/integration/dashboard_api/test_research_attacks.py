"""A motivated researcher's attacks on the running API: percentiles, DP side channels, and
differencing across projects and groupings."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

import httpx
import psycopg

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


async def ask(
    http: httpx.AsyncClient, token: str, start: datetime, hours: int = 1, **params: Any
) -> httpx.Response:
    query = {
        "code": "glucose",
        "from": start.isoformat(),
        "to": (start + timedelta(hours=hours)).isoformat(),
    }
    return await http.get("/api/v1/research/aggregates", params=query | params, headers=auth(token))


async def test_percentiles_cannot_enumerate_a_cells_patients(
    db: psycopg.AsyncConnection[Any], http: httpx.AsyncClient, publisher: Publisher
) -> None:
    """Attack: percentiles 1..99 of a 12-patient cell list every patient's hourly mean; min and
    max are single patients' values."""
    admin = await make_user(db, "admin")
    small = [await cohort_patient(db, "enumerate") for _ in range(12)]
    large = [await cohort_patient(db, "enumerate") for _ in range(25)]
    for p in small + large:
        await put_consent(http, admin, p, RESEARCH_GLUCOSE)
    first, second = closed_hour(4), closed_hour(3)
    values = {p: 5.0 + 0.25 * i for i, p in enumerate(small)}
    later = {p: 5.0 + 0.25 * i for i, p in enumerate(large)}
    await publish_glucose(
        db,
        publisher,
        {p: hourly(first, v) for p, v in values.items()} | {p: hourly(second, v) for p, v in later.items()},
    )
    _, researcher = await project_with_researcher(http, db, admin, "enumerate")

    every = await ask(http, researcher, first, percentiles=",".join(str(p) for p in range(1, 100)))
    assert every.status_code == 422 and "25, 50, 75" in every.json()["detail"], every.text
    extreme = await ask(http, researcher, first, percentiles="1,99")
    assert extreme.status_code == 422, extreme.text

    [cell] = (await ask(http, researcher, first)).json()["cells"]
    assert not cell["suppressed"]
    assert "min" not in cell and "max" not in cell
    assert cell["percentiles"] == {}  # 12 patients: too few for a window of 10 and 10 outside it
    [cell] = (await ask(http, researcher, second)).json()["cells"]
    assert set(cell["percentiles"]) == {"p50"}  # 25 patients: the median only
    released = {v for v in (cell["mean"], *cell["percentiles"].values()) if v is not None}
    assert released, cell
    # each patient's hourly mean as released (0.1 mmol/L, half up), and unrounded
    patient_values = {math.floor(v / 0.1 + 0.5) / 10 for v in later.values()} | set(later.values())
    assert not released & patient_values, (released, sorted(patient_values))


async def test_a_dp_release_shows_no_cell_by_its_presence(
    db: psycopg.AsyncConnection[Any], http: httpx.AsyncClient, publisher: Publisher
) -> None:
    """Attack: a DP release over an empty hour and an hour with one patient used to return a
    cell only for that patient's hour; the register showed the true count rounded to 5."""
    admin = await make_user(db, "admin")
    him = await cohort_patient(db, "presence", sex="male")
    await put_consent(http, admin, him, RESEARCH_GLUCOSE)
    empty, his = closed_hour(4), closed_hour(3)
    await publish_glucose(db, publisher, {him: hourly(his, 9.0)})
    project, researcher = await project_with_researcher(http, db, admin, "presence", epsilon=(1.0, 10.0))

    response = await ask(http, researcher, empty, hours=2)
    assert response.status_code == 200, response.text
    cells = response.json()["cells"]
    assert [datetime.fromisoformat(c["bucket"]) for c in cells] == [empty, his]
    assert all(c["epsilon"] == 1.0 for c in cells)
    # Grouped by sex: every declared group of every hour, the empty ones included.
    by_sex = (await ask(http, researcher, empty, hours=2, group_by="sex")).json()["cells"]
    assert {(datetime.fromisoformat(c["bucket"]), c["group"]) for c in by_sex} == {
        (h, s) for h in (empty, his) for s in ("female", "male", "other", "unknown")
    }
    register = (await http.get("/api/v1/research/register")).json()
    [mine] = [p for p in register["projects"] if p["slug"] == project["slug"]]
    assert [r["patients_rounded"] for r in mine["releases"]] == [None, None]


async def test_differencing_across_projects_and_groupings_is_refused(
    db: psycopg.AsyncConnection[Any], http: httpx.AsyncClient, publisher: Publisher
) -> None:
    """Attack: an all-patients project and a women-only project over the same hour differ by the
    one man; so do a project's all-patients cell and, after he withdraws, its women's cell."""
    admin = await make_user(db, "admin")
    women = [await cohort_patient(db, "across") for _ in range(12)]
    him = await cohort_patient(db, "across", sex="male")
    for p in [*women, him]:
        await put_consent(http, admin, p, RESEARCH_GLUCOSE)
    hour, later = closed_hour(4), closed_hour(3)
    await publish_glucose(
        db,
        publisher,
        {p: hourly(hour, 6.0) + hourly(later, 6.0) for p in women}
        | {him: hourly(hour, 30.0) + hourly(later, 30.0)},
    )
    _, everyone = await project_with_researcher(http, db, admin, "across", slug="across-all")
    _, only_women = await project_with_researcher(
        http, db, admin, "across", slug="across-women", cohort={"sex": ["female"]}
    )

    [all_cell] = (await ask(http, everyone, hour)).json()["cells"]
    assert not all_cell["suppressed"]
    [women_cell] = (await ask(http, only_women, hour)).json()["cells"]
    assert women_cell["suppressed"] and "released before" in women_cell["reason"], women_cell
    assert "mean" not in women_cell

    # The same project, another grouping, after he withdraws: the women's cell of the later
    # hour would be the all-patients cell less him.
    [later_all] = (await ask(http, everyone, later)).json()["cells"]
    assert not later_all["suppressed"]
    await put_consent(http, admin, him, [])
    by_sex = (await ask(http, everyone, later, group_by="sex")).json()["cells"]
    assert by_sex and all(c["suppressed"] for c in by_sex), by_sex
    # A set of patients disjoint from the earlier ones is no difference: released.
    others = [await cohort_patient(db, "across-other") for _ in range(12)]
    for p in others:
        await put_consent(http, admin, p, RESEARCH_GLUCOSE)
    await publish_glucose(db, publisher, {p: hourly(hour, 7.0) for p in others})
    _, third = await project_with_researcher(http, db, admin, "across-other")
    [other_cell] = (await ask(http, third, hour)).json()["cells"]
    assert not other_cell["suppressed"], other_cell
