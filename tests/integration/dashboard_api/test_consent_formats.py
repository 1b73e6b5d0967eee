"""Consent documents round-trip through the API; what cannot be read is refused, never guessed."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg

from telehealth.codes import CODES
from tests.factories import auth, make_patient, make_user

PROVISIONS = [
    {"purpose": "research", "decision": "permit", "codes": ["glucose"]},
    {"purpose": "commercial", "decision": "deny", "codes": []},
]


async def decisions(http: httpx.AsyncClient, token: str, patient: Any) -> dict[tuple[str, str], str]:
    out = {}
    for purpose in ("research", "planning", "commercial"):
        for code in CODES:
            r = await http.get(
                "/api/v1/consent/decision",
                params={"patient_id": str(patient), "purpose": purpose, "code": code},
                headers=auth(token),
            )
            assert r.status_code == 200, r.text
            out[(purpose, code)] = r.json()["decision"]
    return out


async def test_putting_back_the_exported_fhir_consent_keeps_its_meaning(
    db: psycopg.AsyncConnection[Any], http: httpx.AsyncClient
) -> None:
    """Attack (accidental or not): PUT the API's own FHIR export; it used to store no provisions."""
    patient = await make_patient(db, "team-formats")
    admin = await make_user(db, "admin")
    url = f"/api/v1/patients/{patient}/consent"
    first = await http.put(url, json={"provisions": PROVISIONS}, headers=auth(admin))
    assert first.status_code == 200, first.text
    before = await decisions(http, admin, patient)
    assert before[("research", "glucose")] == "permit"

    bundle = (await http.get(url, params={"format": "fhir"}, headers=auth(admin))).json()
    [entry] = bundle["entry"]
    back = await http.put(
        url,
        json=entry["resource"],
        headers=auth(admin) | {"Content-Type": "application/fhir+json"},
    )
    assert back.status_code == 200, back.text
    current = (await http.get(url, headers=auth(admin))).json()["current"]
    assert current["version"] == 2
    assert current["provisions"] == PROVISIONS
    assert await decisions(http, admin, patient) == before

    # The JSON form too: the exported version put back as it is.
    exported = {k: v for k, v in current.items()}
    again = await http.put(url, json=exported, headers=auth(admin))
    assert again.status_code == 200, again.text
    assert again.json()["current"]["provisions"] == PROVISIONS
    assert await decisions(http, admin, patient) == before


async def test_unreadable_consent_documents_are_refused_by_name(
    db: psycopg.AsyncConnection[Any], http: httpx.AsyncClient
) -> None:
    patient = await make_patient(db, "team-formats")
    admin = await make_user(db, "admin")
    url = f"/api/v1/patients/{patient}/consent"
    assert (await http.put(url, json={"provisions": PROVISIONS}, headers=auth(admin))).status_code == 200
    resource = (await http.get(url, params={"format": "fhir"}, headers=auth(admin))).json()["entry"][0][
        "resource"
    ]
    no_provision = {k: v for k, v in resource.items() if k != "provision"}
    with_actor = resource | {
        "provision": resource["provision"]
        | {
            "provision": [
                p | {"actor": [{"role": {"text": "any"}, "reference": {"reference": "Organization/x"}}]}
                for p in resource["provision"]["provision"]
            ]
        }
    }
    cases = [
        (no_provision, "provision is missing"),
        (with_actor, "provision.provision[0].actor is not understood"),
        ({"resourceType": "Consent", "status": "active"}, "FHIR"),
        ({"provisons": PROVISIONS}, "provisons"),  # a typo in the JSON form is not a withdrawal
        ({"provisions": PROVISIONS, "opt_out": True}, "opt_out"),
    ]
    for body, named in cases:
        refused = await http.put(url, json=body, headers=auth(admin))
        assert refused.status_code == 422, (body, refused.text)
        assert named in refused.text, refused.text
    current = (await http.get(url, headers=auth(admin))).json()["current"]
    assert current["version"] == 1 and current["provisions"] == PROVISIONS  # nothing stored
