"""The consent decision rule: precedence, versions in force, default, FHIR shape."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from fhir.resources.R4B.consent import Consent
from pydantic import ValidationError

from telehealth.consent import ConsentVersion, Provision, Purpose, decide, eligible_purposes
from telehealth.consent_fhir import to_fhir

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)


def version(n: int, *provisions: Provision, opt_out: bool = False, applies: datetime = NOW) -> ConsentVersion:
    return ConsentVersion(
        version=n,
        provisions=list(provisions),
        national_opt_out=opt_out,
        recorded_by="someone",
        recorded_by_role="patient",
        recorded_at=applies,
        applies_from=applies,
    )


PERMIT_RESEARCH = Provision(purpose=Purpose.RESEARCH, decision="permit")
DENY_GLUCOSE = Provision(purpose=Purpose.RESEARCH, decision="deny", codes=["glucose"])


def test_no_record_is_the_deployment_default() -> None:
    shipped = decide([], Purpose.RESEARCH, "glucose", NOW)
    assert (shipped.outcome, shipped.eligible, shipped.version) == ("no-consent", False, None)
    permissive = decide([], Purpose.RESEARCH, "glucose", NOW, default_permit=True)
    assert (permissive.outcome, permissive.eligible) == ("no-consent", True)


def test_deny_overrides_permit_within_a_version() -> None:
    history = [version(1, PERMIT_RESEARCH, DENY_GLUCOSE)]
    assert decide(history, Purpose.RESEARCH, "glucose", NOW).outcome == "deny"
    assert decide(history, Purpose.RESEARCH, "spo2", NOW).outcome == "permit"
    assert decide(history, Purpose.COMMERCIAL, "spo2", NOW).outcome == "deny"  # never permitted


def test_newest_version_in_force_wins() -> None:
    history = [version(1, DENY_GLUCOSE), version(2, PERMIT_RESEARCH, applies=NOW - timedelta(hours=1))]
    d = decide(history, Purpose.RESEARCH, "glucose", NOW)
    assert (d.outcome, d.version) == ("permit", 2)
    future = [*history, version(3, applies=NOW + timedelta(days=1))]
    assert decide(future, Purpose.RESEARCH, "glucose", NOW).version == 2
    assert decide(future, Purpose.RESEARCH, "glucose", NOW + timedelta(days=2)).outcome == "deny"
    before_any = decide(history, Purpose.RESEARCH, "glucose", NOW - timedelta(days=1))
    assert before_any.outcome == "no-consent"


@pytest.mark.parametrize("purpose", list(Purpose))
def test_national_opt_out_beats_every_permit(purpose: Purpose) -> None:
    everything = [Provision(purpose=p, decision="permit") for p in Purpose]
    d = decide([version(1, *everything, opt_out=True)], purpose, "glucose", NOW, default_permit=True)
    assert (d.outcome, d.eligible, d.reason) == ("deny", False, "national data opt-out")


def test_eligible_purposes_lists_every_permitted_purpose_with_the_version() -> None:
    history = [
        version(4, PERMIT_RESEARCH, Provision(purpose=Purpose.PLANNING, decision="permit", codes=["spo2"]))
    ]
    assert eligible_purposes(history, "spo2", NOW) == (4, ["research", "planning"])
    assert eligible_purposes(history, "glucose", NOW) == (4, ["research"])
    assert eligible_purposes([], "glucose", NOW) == (None, [])


def test_unknown_codes_are_refused() -> None:
    with pytest.raises(ValidationError, match="unknown code"):
        Provision(purpose=Purpose.RESEARCH, decision="permit", codes=["weight"])


def test_fhir_representation_is_a_valid_r4_consent() -> None:
    patient = uuid4()
    v = version(2, PERMIT_RESEARCH, DENY_GLUCOSE, opt_out=True)
    resource = Consent.model_validate(to_fhir(patient, v, active=True))
    assert resource.patient.reference == f"Patient/{patient}"
    assert resource.provision.type == "deny"  # opt-in: what is not permitted is denied
    nested = resource.provision.provision
    assert [p.type for p in nested] == ["deny", "permit", "deny"]  # opt-out first
    assert {c.code for c in nested[0].purpose} == {"HRESCH", "HOPERAT", "HMARKT"}
    assert nested[2].code[0].coding[0].code == "glucose"
