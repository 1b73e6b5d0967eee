"""Consent formats round-trip: export a version, read it back, every decision is the same."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dashboard_api.routes.consent import parse_consent
from telehealth.codes import CODES
from telehealth.consent import ConsentVersion, Provision, Purpose, decide_under
from telehealth.consent_fhir import FhirConsentError, from_fhir, to_fhir

provisions = st.builds(
    Provision,
    purpose=st.sampled_from(list(Purpose)),
    decision=st.sampled_from(["permit", "deny"]),
    codes=st.lists(st.sampled_from(sorted(CODES)), max_size=3),
)
versions = st.builds(
    ConsentVersion,
    version=st.integers(1, 50),
    provisions=st.lists(provisions, max_size=5),
    national_opt_out=st.booleans(),
    recorded_by=st.just("someone"),
    recorded_by_role=st.sampled_from(["patient", "admin"]),
    recorded_at=st.just(datetime(2026, 11, 23, 8, tzinfo=UTC)),
    applies_from=st.datetimes(
        min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
    ),
)


def decisions(version: ConsentVersion) -> dict[tuple[Purpose, str], tuple[str, bool]]:
    return {
        (p, c): (d.outcome, d.eligible) for p in Purpose for c in CODES for d in [decide_under(version, p, c)]
    }


def again(original: ConsentVersion, provisions: list[Provision], opt_out: bool) -> ConsentVersion:
    return original.model_copy(update={"provisions": provisions, "national_opt_out": opt_out})


@settings(max_examples=200, deadline=None)
@given(versions)
def test_fhir_export_read_back_decides_the_same(version: ConsentVersion) -> None:
    patient = uuid4()
    parsed = from_fhir(to_fhir(patient, version, active=True), patient)
    assert parsed.applies_from == version.applies_from
    assert decisions(again(version, parsed.provisions, parsed.national_opt_out)) == decisions(version)


@settings(max_examples=200, deadline=None)
@given(versions)
def test_json_export_put_back_decides_the_same(version: ConsentVersion) -> None:
    body = parse_consent(version.model_dump(mode="json"), uuid4())
    assert body.applies_from == version.applies_from
    assert decisions(again(version, body.provisions, body.national_opt_out)) == decisions(version)


def exported() -> tuple[Any, dict[str, Any]]:
    patient = uuid4()
    version = ConsentVersion(
        version=1,
        provisions=[Provision(purpose=Purpose.RESEARCH, decision="permit", codes=["glucose"])],
        national_opt_out=False,
        recorded_by="p",
        recorded_by_role="patient",
        recorded_at=datetime(2026, 11, 23, tzinfo=UTC),
        applies_from=datetime(2026, 11, 23, tzinfo=UTC),
    )
    return patient, to_fhir(patient, version, active=True)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda r: r.pop("provision"), "provision is missing"),
        (lambda r: r["provision"]["provision"][0].update(actor=[]), "provision.provision[0].actor"),
        (lambda r: r["provision"]["provision"][0].update(dataPeriod={"start": "2026-01-01"}), "dataPeriod"),
        (lambda r: r["provision"].update(type="permit"), "provision.type must be deny"),
        (lambda r: r.update(status="inactive"), "status must be active"),
        (lambda r: r.update(verification=[{"verified": True}]), "verification is not understood"),
        (
            lambda r: r["provision"]["provision"][0]["purpose"][0].update(code="TREAT"),
            "purpose http://terminology.hl7.org/CodeSystem/v3-ActReason|TREAT",
        ),
        (lambda r: r["provision"]["provision"][0]["code"][0].update(coding=[]), "code[0] names no"),
        (lambda r: r.update(patient={"reference": f"Patient/{uuid4()}"}), "is not Patient/"),
    ],
)
def test_what_a_fhir_consent_says_beyond_the_mapping_is_refused_by_name(change: Any, named: str) -> None:
    patient, resource = exported()
    change(resource)
    with pytest.raises(FhirConsentError) as caught:
        from_fhir(resource, patient)
    assert any(named in p for p in caught.value.problems), caught.value.problems
