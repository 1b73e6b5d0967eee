from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

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
