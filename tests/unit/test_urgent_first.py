"""Which readings of a batch commit first: those of patients who may have an urgent alert."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID, uuid4

from processor.alerts.engine import ThresholdEngine
from processor.normalise import NormalisedObservation, Quality
from processor.pipeline import Prepared, urgent_first
from telehealth.contracts import AcceptedReading

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
UNITS = {"glucose": "mmol/L", "spo2": "%", "pulse": "/min"}
engine = ThresholdEngine()


def obs(code: str, value: float, quality: tuple[Quality, ...] = ()) -> NormalisedObservation:
    return NormalisedObservation(uuid4(), "dev", 1, T0, T0, code, value, UNITS[code], "", None, quality)


def test_an_urgent_band_of_the_default_rules_is_a_guess_that_a_reading_may_be_urgent() -> None:
    assert engine.may_be_urgent(obs("spo2", 85))
    assert engine.may_be_urgent(obs("glucose", 2.9))
    assert engine.may_be_urgent(obs("pulse", 150))
    assert not engine.may_be_urgent(obs("spo2", 97))
    assert not engine.may_be_urgent(obs("spo2", 92))  # a warning (at or below 93), not urgent
    assert not engine.may_be_urgent(obs("glucose", 3.5))
    # late or flagged readings never alarm, so they are never urgent either
    assert not engine.may_be_urgent(obs("spo2", 85, (Quality.LATE,)))


def prepared(patient: UUID, seq: int, code: str, value: float) -> Prepared:
    reading = AcceptedReading.model_validate(
        {
            "device_id": f"dev-{patient}",
            "seq": seq,
            "measured_at": datetime.now(UTC),
            "received_at": datetime.now(UTC),
            "observations": [{"code": code, "value": value, "unit": UNITS[code]}],
        }
    )
    o = NormalisedObservation(patient, reading.device_id, seq, T0, T0, code, value, UNITS[code], "", None, ())
    return Prepared(reading, patient, [o])


def test_patients_with_an_urgent_reading_go_first_with_all_their_readings_in_order() -> None:
    calm, urgent, other = uuid4(), uuid4(), uuid4()
    batch = [
        prepared(calm, 1, "spo2", 97),
        prepared(urgent, 1, "pulse", 80),  # not urgent itself, but its patient's is
        prepared(other, 1, "spo2", 96),
        prepared(urgent, 2, "spo2", 84),
        prepared(calm, 2, "spo2", 98),
        prepared(urgent, 3, "spo2", 95),
    ]
    first, rest = urgent_first(batch, engine.may_be_urgent)
    assert [(p.patient_id, p.reading.seq) for p in first] == [(urgent, 1), (urgent, 2), (urgent, 3)]
    assert [(p.patient_id, p.reading.seq) for p in rest] == [(calm, 1), (other, 1), (calm, 2)]


def test_one_transaction_when_nothing_or_everything_is_urgent() -> None:
    calm = [prepared(uuid4(), 1, "spo2", 97), prepared(uuid4(), 1, "glucose", 6.0)]
    assert urgent_first(calm, engine.may_be_urgent) == [calm]
    alarming = [prepared(uuid4(), 1, "spo2", 80), prepared(uuid4(), 1, "glucose", 2.5)]
    assert urgent_first(alarming, engine.may_be_urgent) == [alarming]
    assert urgent_first([], engine.may_be_urgent) == [[]]
