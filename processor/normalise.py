"""Canonical units and quality flags. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from uuid import UUID

from telehealth.codes import CODES
from telehealth.contracts import AcceptedReading


class Quality(StrEnum):
    IMPLAUSIBLE = "implausible"
    LATE = "late"
    FUTURE = "future"
    #: a motion or poor-signal reading (processor.alerts.artefact): stored, never alarmed on
    ARTEFACT = "artefact"


@dataclass(slots=True)
class NormalisedObservation:
    """One observation in canonical units with its quality flags; never changed once made
    (copy it with `dataclasses.replace`). Not frozen: every reading makes two or more, and a
    frozen dataclass takes three times as long to build; slots, as their fields are read more
    often than anything else in the processor (`bench.stages`)."""

    patient_id: UUID
    device_id: str
    seq: int
    measured_at: datetime
    received_at: datetime
    code: str
    value: float
    unit: str
    loinc: str
    source: str | None
    quality: tuple[Quality, ...]

    @property
    def live(self) -> bool:
        """Fit to raise live alerts: on time and plausible."""
        return not self.quality


def reading_flags(
    reading: AcceptedReading, late_after: timedelta, future_tolerance: timedelta
) -> tuple[Quality, ...]:
    lag = reading.received_at - reading.measured_at
    if lag > late_after:
        return (Quality.LATE,)
    if -lag > future_tolerance:
        return (Quality.FUTURE,)
    return ()


#: glucose source by provisioned device kind: the kind decides, the payload's `source` is a hint
SOURCE_BY_KIND = {"cgm": "cgm", "glucometer": "smbg"}


def glucose_source(payload_source: str | None, device_kind: str | None) -> str | None:
    """CGM or finger-prick, from what the device is; the payload field only where the kind is silent."""
    return SOURCE_BY_KIND.get(device_kind or "", payload_source)


def normalise(
    reading: AcceptedReading,
    patient_id: UUID,
    *,
    late_after: timedelta,
    future_tolerance: timedelta,
    device_kind: str | None = None,
) -> list[NormalisedObservation]:
    flags = reading_flags(reading, late_after, future_tolerance)
    out = []
    for obs in reading.observations:
        spec = CODES[obs.code]
        source = glucose_source(obs.source, device_kind) if obs.code == "glucose" else obs.source
        value = spec.to_canonical(obs.value, obs.unit)
        quality = flags if spec.is_plausible(value) else (*flags, Quality.IMPLAUSIBLE)
        out.append(
            NormalisedObservation(
                patient_id=patient_id,
                device_id=reading.device_id,
                seq=reading.seq,
                measured_at=reading.measured_at,
                received_at=reading.received_at,
                code=obs.code,
                value=round(value, 4),
                unit=spec.canonical_unit,
                loinc=spec.loinc_for(source),
                source=source,
                quality=quality,
            )
        )
    return out
