"""Which readings of a batch commit first: those of patients who may have an urgent alert."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest

from processor import urgent
from processor.alerts.engine import ThresholdEngine
from processor.urgent import UrgentGuess, urgent_first
from telehealth.contracts import AcceptedReading

UNITS = {"glucose": "mmol/L", "spo2": "%", "pulse": "/min"}
engine = ThresholdEngine()
guess = UrgentGuess(engine.may_be_urgent)


def test_an_urgent_band_of_the_default_rules_is_a_guess_that_a_reading_may_be_urgent() -> None:
    assert engine.may_be_urgent("spo2", 85)
    assert engine.may_be_urgent("spo2", 91)  # urgent at or below 91 % on scale 1
    assert engine.may_be_urgent("glucose", 2.9)
    assert engine.may_be_urgent("pulse", 150)
    assert engine.may_be_urgent("pulse", 35)
    assert not engine.may_be_urgent("spo2", 97)
    assert not engine.may_be_urgent("spo2", 92)  # a warning (at or below 93), not urgent
    assert not engine.may_be_urgent("glucose", 3.5)
    assert not engine.may_be_urgent("glucose", 25.0)  # high is a warning only


def reading(device: str, seq: int, code: str, value: float, unit: str | None = None) -> AcceptedReading:
    now = datetime.now(UTC)
    return AcceptedReading.model_validate(
        {
            "device_id": device,
            "seq": seq,
            "measured_at": now,
            "received_at": now,
            "observations": [{"code": code, "value": value, "unit": unit or UNITS[code]}],
        }
    )


def keys(readings: list[AcceptedReading]) -> list[tuple[str, int]]:
    return [(r.device_id, r.seq) for r in readings]


def test_patients_with_an_urgent_reading_go_first_with_all_their_readings_in_order() -> None:
    calm, urgent, other = uuid4(), uuid4(), uuid4()
    owner = {"calm-ox": calm, "urgent-ox": urgent, "urgent-cgm": urgent, "other-ox": other}
    batch = [
        reading("calm-ox", 1, "spo2", 97),
        reading("urgent-cgm", 1, "glucose", 6.0),  # not urgent itself, but its patient is
        reading("other-ox", 1, "spo2", 96),
        reading("urgent-ox", 2, "spo2", 84),
        reading("calm-ox", 2, "spo2", 98),
        reading("urgent-ox", 3, "spo2", 95),
        reading("unknown", 1, "spo2", 70),  # no patient: never urgent, becomes a letter later
    ]
    first, rest = urgent_first(batch, owner.get, guess)
    assert keys(first) == [("urgent-cgm", 1), ("urgent-ox", 2), ("urgent-ox", 3)]
    assert keys(rest) == [("calm-ox", 1), ("other-ox", 1), ("calm-ox", 2), ("unknown", 1)]


def test_the_guess_is_made_in_canonical_units() -> None:
    patient: dict[str, UUID] = {"meter": uuid4(), "ox": uuid4()}
    low = reading("meter", 1, "glucose", 50, "mg/dL")  # 2.8 mmol/L: urgent low
    first, rest = urgent_first([reading("ox", 1, "spo2", 97), low], patient.get, guess)
    assert keys(first) == [("meter", 1)] and keys(rest) == [("ox", 1)]


def test_one_transaction_when_nothing_or_everything_is_urgent() -> None:
    owner = {d: uuid4() for d in ("a", "b")}
    calm = [reading("a", 1, "spo2", 97), reading("b", 1, "glucose", 6.0)]
    assert urgent_first(calm, owner.get, guess) == [calm]
    alarming = [reading("a", 2, "spo2", 80), reading("b", 2, "glucose", 2.5)]
    assert urgent_first(alarming, owner.get, guess) == [alarming]
    assert urgent_first([], owner.get, guess) == [[]]


def test_a_remembered_guess_is_per_unit_as_well_as_per_value() -> None:
    fresh = UrgentGuess(engine.may_be_urgent)
    assert fresh(reading("meter", 1, "glucose", 50, "mg/dL"))  # 2.8 mmol/L: urgent
    assert not fresh(reading("meter", 2, "glucose", 50, "mmol/L"))  # high: a warning only
    assert fresh(reading("meter", 3, "glucose", 50, "mg/dL"))  # remembered, same answer


def test_the_memory_is_bounded_and_forgetting_changes_no_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(urgent, "REMEMBERED", 3)
    bounded = UrgentGuess(engine.may_be_urgent)
    values = [97, 84, 92, 91, 96, 80, 97, 84]
    answers = [bounded(reading("ox", i, "spo2", v)) for i, v in enumerate(values)]
    assert answers == [engine.may_be_urgent("spo2", v) for v in values]
    assert len(bounded._known) <= 3
