from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from processor.alerts.rules import Severity, breaches
from processor.normalise import NormalisedObservation, Quality, normalise
from telehealth.contracts import AcceptedReading, Observation

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
PATIENT = uuid4()
LATE = timedelta(minutes=10)
FUTURE = timedelta(minutes=5)


def accepted(
    value: float, unit: str = "mmol/L", code: str = "glucose", measured: datetime = NOW, seq: int = 1
) -> AcceptedReading:
    return AcceptedReading(
        device_id="cgm-1",
        seq=seq,
        measured_at=measured,
        received_at=NOW,
        observations=[Observation(code=code, value=value, unit=unit)],
    )


def norm(reading: AcceptedReading) -> list[NormalisedObservation]:
    return normalise(reading, PATIENT, late_after=LATE, future_tolerance=FUTURE)


def test_mg_dl_becomes_mmol_l() -> None:
    [obs] = norm(accepted(54, "mg/dL"))
    assert obs.unit == "mmol/L" and obs.value == pytest.approx(2.9974, abs=1e-4)
    assert obs.live


@pytest.mark.parametrize(
    ("reading", "flags"),
    [
        (accepted(5.0, measured=NOW - timedelta(minutes=11)), (Quality.LATE,)),
        (accepted(5.0, measured=NOW - timedelta(minutes=9)), ()),
        (accepted(5.0, measured=NOW + timedelta(minutes=6)), (Quality.FUTURE,)),
        (accepted(45.0), (Quality.IMPLAUSIBLE,)),
        (accepted(0.2, measured=NOW - timedelta(hours=2)), (Quality.LATE, Quality.IMPLAUSIBLE)),
    ],
)
def test_quality_flags(reading: AcceptedReading, flags: tuple[Quality, ...]) -> None:
    [obs] = norm(reading)
    assert obs.quality == flags


@pytest.mark.parametrize(
    ("code", "value", "unit", "rule", "severity"),
    [
        ("glucose", 2.9, "mmol/L", "glucose_low", Severity.URGENT),
        ("glucose", 3.0, "mmol/L", "glucose_low", Severity.WARNING),
        ("glucose", 3.8, "mmol/L", "glucose_low", Severity.WARNING),
        ("glucose", 3.9, "mmol/L", None, None),
        ("glucose", 13.9, "mmol/L", None, None),
        ("glucose", 14.0, "mmol/L", "glucose_high", Severity.WARNING),
        ("glucose", 50, "mg/dL", "glucose_low", Severity.URGENT),
        ("spo2", 94, "%", None, None),
        ("spo2", 93, "%", "spo2_low", Severity.WARNING),
        ("spo2", 92, "%", "spo2_low", Severity.WARNING),
        ("spo2", 91, "%", "spo2_low", Severity.URGENT),
        ("pulse", 51, "/min", None, None),
        ("pulse", 50, "/min", "pulse", Severity.WARNING),
        ("pulse", 41, "/min", "pulse", Severity.WARNING),
        ("pulse", 40, "/min", "pulse", Severity.URGENT),
        ("pulse", 110, "/min", None, None),
        ("pulse", 111, "/min", "pulse", Severity.WARNING),
        ("pulse", 130, "/min", "pulse", Severity.WARNING),
        ("pulse", 131, "/min", "pulse", Severity.URGENT),
    ],
)
def test_default_thresholds(
    code: str, value: float, unit: str, rule: str | None, severity: Severity | None
) -> None:
    found = breaches(norm(accepted(value, unit, code)))
    assert [(b.rule, b.severity) for b in found] == ([(rule, severity)] if rule else [])


def test_late_and_implausible_readings_raise_nothing() -> None:
    late = norm(accepted(2.0, measured=NOW - timedelta(minutes=30)))
    implausible = norm(accepted(0.3))
    assert breaches(late + implausible) == []


def test_worst_breach_per_patient_and_rule_wins() -> None:
    series = [
        accepted(v, seq=i, measured=NOW + timedelta(minutes=i)) for i, v in enumerate([3.5, 2.8, 2.5, 3.6])
    ]
    found = breaches([o for r in series for o in norm(r)])
    [breach] = found
    assert breach.severity is Severity.URGENT and breach.value == 2.8
