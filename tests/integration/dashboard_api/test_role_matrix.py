"""Every role against every endpoint: who gets what, and refusals never carry patient data."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from simulators.cohort import nhs_number_for
from telehealth.broker.admin import device_logins
from telehealth.provisioning import provision_device
from telehealth.settings import Settings
from telehealth.storage.people import add_user
from tests.conftest import eventually
from tests.factories import auth, make_patient, make_user

ROLES = (
    "anonymous",
    "admin",
    "clinician",
    "clinician_other_team",
    "researcher",
    "patient_self",
    "patient_other",
)
_unique = itertools.count(92_000)


@dataclass(frozen=True)
class World:
    patient: UUID
    patient_name: str
    tokens: dict[str, str | None]


@pytest.fixture(scope="module")
async def world(settings: Settings, api_url: str) -> AsyncIterator[World]:
    assert settings.database_url

    async def api_ready() -> bool:
        # An earlier test may have restarted the database; the API's pool reconnects with backoff.
        async with httpx.AsyncClient(base_url=api_url, timeout=5) as client:
            try:
                return (await client.get("/readyz")).status_code == 200
            except httpx.TransportError:
                return False

    await eventually(api_ready, timeout=60)
    async with await psycopg.AsyncConnection.connect(
        settings.database_url, autocommit=True, row_factory=dict_row
    ) as db:
        patient = await make_patient(db, "team-matrix")
        other_patient = await make_patient(db, "team-matrix")
        cur = await db.execute("SELECT name FROM patients WHERE id = %s", (patient,))
        row = await cur.fetchone()
        assert row is not None
        await add_user(db, "matrix-target", "clinician", care_teams=["team-matrix"])
        tokens: dict[str, str | None] = {
            "anonymous": None,
            "admin": await make_user(db, "admin"),
            "clinician": await make_user(db, "clinician", ["team-matrix"]),
            "clinician_other_team": await make_user(db, "clinician", ["team-elsewhere"]),
            "researcher": await make_user(db, "researcher"),
            "patient_self": await make_user(db, "patient", patient_id=patient),
            "patient_other": await make_user(db, "patient", patient_id=other_patient),
        }
        yield World(patient, row["name"], tokens)


def _expect(anonymous: int = 401, **by_role: int) -> dict[str, int]:
    """Everything not named is 403 (the role may not use the endpoint at all)."""
    return {role: by_role.get(role, 403) for role in ROLES} | {"anonymous": anonymous}


READER = _expect(clinician=200, clinician_other_team=404, patient_self=200, patient_other=404)
CLINICIAN_ON_PATIENT = _expect(clinician=200, clinician_other_team=404)
CLINICIAN_LIST = _expect(clinician=200, clinician_other_team=200)
ADMIN_ONLY = _expect(admin=200)
LOGGED_IN = _expect(**dict.fromkeys(ROLES[1:], 200))

# (method, path, body, expected status by role)
ENDPOINTS: list[tuple[str, str, Any, dict[str, int]]] = [
    ("GET", "/api/v1/auth/me", None, LOGGED_IN),
    ("GET", "/api/v1/patients", None, CLINICIAN_LIST),
    ("POST", "/api/v1/patients", "new-patient", _expect(admin=201)),
    ("GET", "/api/v1/patients/{patient}/observations", None, READER),
    ("GET", "/api/v1/patients/{patient}/observations?bucket=1h", None, READER),
    ("GET", "/api/v1/patients/{patient}/thresholds", None, READER),
    ("PUT", "/api/v1/patients/{patient}/thresholds", {"spo2_scale": 2}, CLINICIAN_ON_PATIENT),
    (
        "GET",
        "/api/v1/patients/{patient}/access-log",
        None,
        _expect(admin=200, patient_self=200, patient_other=404),
    ),
    ("GET", "/api/v1/patients/{patient}/glucose-summary", None, READER),
    ("GET", "/api/v1/patients/{patient}/glucose-days", None, READER),
    ("GET", "/api/v1/patients/{patient}/now", None, READER),
    ("GET", "/api/v1/patients/{patient}/treatments", None, READER),
    ("GET", "/api/v1/patients/{patient}", None, READER),
    (
        "PUT",
        "/api/v1/patients/{patient}/time-zone",
        {"time_zone": "Europe/London"},
        _expect(admin=200, clinician=200, clinician_other_team=404, patient_self=200, patient_other=404),
    ),
    ("PUT", "/api/v1/auth/me/preferences", {"glucose_unit": "mmol/L"}, LOGGED_IN),
    (
        "GET",
        "/api/v1/patients/{patient}/consent",
        None,
        _expect(admin=200, clinician=200, clinician_other_team=404, patient_self=200, patient_other=404),
    ),
    (
        "GET",
        "/api/v1/patients/{patient}/data-uses",
        None,
        _expect(admin=200, patient_self=200, patient_other=404),
    ),
    ("POST", "/api/v1/devices", "new-device", _expect(admin=201)),
    ("POST", "/api/v1/devices/{device}/revoke", None, ADMIN_ONLY),
    ("POST", "/api/v1/devices/{device}/reassign", "reassign", ADMIN_ONLY),
    ("GET", "/api/v1/alerts", None, CLINICIAN_LIST),
    ("GET", "/api/v1/alerts?patient_id={patient}&status=all", None, CLINICIAN_LIST),
    ("POST", "/api/v1/alerts/{alert}/acknowledge", {"note": "seen"}, CLINICIAN_ON_PATIENT),
    ("POST", "/api/v1/alerts/{alert}/resolve", {"note": "done"}, CLINICIAN_ON_PATIENT),
    ("GET", "/api/v1/audit/head", None, ADMIN_ONLY),
    ("POST", "/api/v1/users/matrix-target/revoke-tokens", None, ADMIN_ONLY),
    ("GET", "/fhir/metadata", None, _expect(anonymous=200, **dict.fromkeys(ROLES[1:], 200))),
    ("GET", "/fhir/Patient/{patient}", None, READER),
    ("GET", "/fhir/Observation?patient={patient}", None, READER),
    ("GET", "/fhir/Observation?subject=Patient/{patient}&code=glucose", None, READER),
    ("GET", "/fhir/Device?patient={patient}", None, READER),
    ("GET", "/fhir/Device/{device}", None, READER),
    ("GET", "/fhir/Flag?patient={patient}", None, CLINICIAN_ON_PATIENT),
    (
        "GET",
        "/fhir/Consent?patient={patient}",
        None,
        _expect(admin=200, clinician=200, clinician_other_team=404, patient_self=200, patient_other=404),
    ),
    ("GET", "/fhir/Patient/{patient}/$cgm-summary?days=14", None, READER),
    ("GET", "/fhir/Patient/{patient}/$cgm-bundle?days=2", None, READER),
]


def _body(kind: Any, patient: UUID) -> Any:
    n = next(_unique)
    if kind == "new-patient":
        return {
            "nhs_number": nhs_number_for(n),
            "name": "Matrix New",
            "birth_date": "1980-02-03",
            "sex": "male",
            "care_team": "team-matrix",
        }
    if kind == "new-device":
        return {"device_id": f"oxi-matrix-{n}", "patient_id": str(patient), "kind": "oximeter"}
    if kind == "reassign":
        return {"patient_id": str(patient)}
    return kind


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(
    ("method", "path", "body", "expected"), ENDPOINTS, ids=[f"{m} {p}" for m, p, _, _ in ENDPOINTS]
)
async def test_role_matrix(
    db: psycopg.AsyncConnection[Any],
    http: httpx.AsyncClient,
    world: World,
    role: str,
    method: str,
    path: str,
    body: Any,
    expected: dict[str, int],
    settings: Settings,
) -> None:
    alert = 0
    device = ""
    if "{device}" in path:
        async with device_logins(settings) as logins:
            made = await provision_device(
                db, logins, device_id=f"oxi-matrix-{next(_unique)}", patient_id=world.patient, kind="oximeter"
            )
        device = made.device_id
    if "{alert}" in path:
        cur = await db.execute(
            """INSERT INTO alerts (patient_id, rule, severity, message, triggered_at)
               VALUES (%s, %s, 'warning', 'matrix', now()) RETURNING id""",
            (world.patient, f"matrix-{next(_unique)}"),
        )
        row = await cur.fetchone()
        assert row is not None
        alert = row["id"]
    url = path.format(patient=world.patient, alert=alert, device=device)
    token = world.tokens[role]
    response = await http.request(
        method, url, json=_body(body, world.patient), headers=auth(token) if token else {}
    )
    assert response.status_code == expected[role], response.text
    if response.status_code >= 400:
        errors = "application/fhir+json" if url.startswith("/fhir/") else "application/problem+json"
        assert response.headers["content-type"] == errors
        assert world.patient_name not in response.text
    elif role == "clinician_other_team":
        assert str(world.patient) not in response.text, "another team's patient leaked into a list"
