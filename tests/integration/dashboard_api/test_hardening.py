"""Bad input gets clear 4xx problems, never a 500; every response carries security headers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import httpx
import psycopg
import pytest

from simulators.cohort import nhs_number_for
from telehealth.settings import Settings
from tests.factories import auth, make_patient, make_user

PROBLEM = "application/problem+json"


@pytest.mark.parametrize("path", ["/api/v1/patients", "/api/v1/auth/token", "/api/v1/alerts/1/resolve"])
async def test_big_bodies_are_refused_before_login_and_parsing(
    http: httpx.AsyncClient, settings: Settings, path: str
) -> None:
    big = b"{" + b" " * (settings.api_max_body_bytes + 1) + b"}"
    declared = await http.post(path, content=big, headers={"Content-Type": "application/json"})
    assert declared.status_code == 413 and declared.headers["content-type"] == PROBLEM, declared.text

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it streams
        yield b'{"username": "'
        for _ in range(settings.api_max_body_bytes // 65536 + 2):
            yield b"a" * 65536
        yield b'"}'

    streamed = await http.post(path, content=chunks(), headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413 and streamed.headers["content-type"] == PROBLEM, streamed.text
    # A small body still gets the ordinary answer.
    assert (await http.post(path, json={})).status_code in (401, 422)


async def test_nul_characters_are_422(db: psycopg.AsyncConnection[Any], http: httpx.AsyncClient) -> None:
    admin = await make_user(db, "admin")
    patient = await make_patient(db, "team-nul")
    clinician = await make_user(db, "clinician", ["team-nul"])
    cur = await db.execute(
        """INSERT INTO alerts (patient_id, rule, severity, message, triggered_at)
           VALUES (%s, 'glucose_low', 'warning', 'low', now()) RETURNING id""",
        (patient,),
    )
    row = await cur.fetchone()
    assert row is not None
    answers = [
        await http.post("/api/v1/auth/token", json={"username": "a\x00b", "password": "x"}),
        await http.post("/api/v1/auth/token", json={"username": "a", "password": "x\x00"}),
        await http.post(
            f"/api/v1/alerts/{row['id']}/acknowledge", json={"note": "ok\x00"}, headers=auth(clinician)
        ),
        await http.post(
            "/api/v1/patients",
            json={
                "nhs_number": nhs_number_for(91_001),
                "name": "Nul\x00Name",
                "birth_date": "1970-01-01",
                "sex": "female",
                "care_team": "t",
            },
            headers=auth(admin),
        ),
        await http.get(f"/api/v1/patients/{patient}/observations?code=glu%00cose", headers=auth(clinician)),
        await http.get(f"/api/v1/patients/{patient}/observations?bucket=5m%00", headers=auth(clinician)),
        await http.post("/api/v1/users/a%00b/revoke-tokens", headers=auth(admin)),
    ]
    for answer in answers:
        assert answer.status_code == 422 and answer.headers["content-type"] == PROBLEM, (
            answer.request.url,
            answer.text,
        )
    cur = await db.execute("SELECT status FROM alerts WHERE id = %s", (row["id"],))
    assert (await cur.fetchone()) == {"status": "open"}


@pytest.mark.parametrize(
    "query",
    [
        "bucket=999999999999d",
        "bucket=99999999999999999999999999999m",
        "bucket=" + "1" * 5000 + "m",
        "to=0001-01-01T00:00:00Z",
        "from=0001-01-01T00:00:00Z&to=9999-12-31T23:59:59Z&bucket=31d",
        "code=" + "x" * 10_000,
    ],
)
async def test_absurd_parameters_are_4xx_not_500(
    db: psycopg.AsyncConnection[Any], http: httpx.AsyncClient, query: str
) -> None:
    patient = await make_patient(db, "team-absurd")
    clinician = await make_user(db, "clinician", ["team-absurd"])
    answer = await http.get(f"/api/v1/patients/{patient}/observations?{query}", headers=auth(clinician))
    assert answer.status_code in (200, 422), answer.text
    assert answer.status_code == 200 or answer.headers["content-type"] == PROBLEM


async def test_absurd_ids_are_422(db: psycopg.AsyncConnection[Any], http: httpx.AsyncClient) -> None:
    clinician = await make_user(db, "clinician", ["t"])
    for alert_id in ("99999999999999999999999", "-1", "0"):
        answer = await http.post(f"/api/v1/alerts/{alert_id}/acknowledge", json={}, headers=auth(clinician))
        assert answer.status_code == 422, answer.text
    assert (
        await http.get("/api/v1/patients/not-a-uuid/observations", headers=auth(clinician))
    ).status_code == 422


async def test_missing_and_foreign_patients_get_the_same_answer(
    db: psycopg.AsyncConnection[Any], http: httpx.AsyncClient
) -> None:
    foreign = await make_patient(db, "team-foreign")
    clinician = await make_user(db, "clinician", ["team-home"])
    patient_user = await make_user(db, "patient", patient_id=await make_patient(db, "team-home"))
    missing = uuid4()

    def shape(response: httpx.Response, patient: object) -> tuple[int, str]:
        return response.status_code, response.text.replace(str(patient), "<id>")

    for token in (clinician, patient_user):
        for method, suffix, body in (
            ("GET", "observations", None),
            ("GET", "thresholds", None),
            ("PUT", "thresholds", {"spo2_scale": 2}),
        ):
            answers = [
                shape(
                    await http.request(
                        method, f"/api/v1/patients/{p}/{suffix}", json=body, headers=auth(token)
                    ),
                    p,
                )
                for p in (foreign, missing)
            ]
            assert answers[0] == answers[1], answers
            assert answers[0][0] in (403, 404)


async def test_security_headers(db: psycopg.AsyncConnection[Any], http: httpx.AsyncClient) -> None:
    clinician = await make_user(db, "clinician", ["t"])
    for path, token in (
        ("/", None),
        ("/static/app.js", None),
        ("/api/v1/patients", clinician),
        ("/api/v1/nope", None),
    ):
        response = await http.get(path, headers=auth(token) if token else {})
        csp = response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self';" in csp and "unsafe-inline" not in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
    api = await http.get("/api/v1/patients", headers=auth(clinician))
    assert api.headers["cache-control"] == "no-store"
    refused = await http.get("/api/v1/patients")
    assert refused.status_code == 401 and refused.headers["cache-control"] == "no-store"
    assert "server" not in api.headers
    # The API docs too: Swagger UI from the pip package, no CDN, the same strict policy.
    docs = await http.get("/docs")
    assert docs.status_code == 200 and docs.headers["content-security-policy"] == csp
    assert "http" not in docs.text.replace("http-equiv", "")
    assert (await http.get("/docs-assets/swagger-ui-bundle.js")).status_code == 200
    assert (await http.get("/redoc")).status_code == 404
