"""Motion and poor-signal artefacts in pulse oximetry. Pure: no I/O but its own memory.

A reading is *suspect* when the device says its signal was poor, or when SpO2 drops by more
than physiology allows between two readings:

- `context.perfusion_index` below 0.3 % (too little pulsatile signal to trust the ratio), or
  `context.signal_quality` below 50 (of 100), or `context.motion` true;
- SpO2 at least 6 points below the same device's last *credible* reading taken within
  5 minutes. A loose probe or a moving hand drops it at once and it recovers at the next
  reading; a flagged reading is never the reference, so a falling patient cannot hide behind
  their own earlier suspect values.

A suspect reading is flagged `artefact` and not alarmed on, unless the reading before it from
the same device was suspect too: a low that persists is confirmed by its second reading,
which is then credible and alarms (at most one reading of delay, whatever the cause). A
single dip that recovers at once stays an artefact.

SpO2 below what the code registry calls plausible (50 %) is flagged `implausible` by the
normaliser, never judged here, and alarmed on by the engine as "check patient and sensor".

For the engine's cyclic-desaturation rule, a reading flagged for a sudden drop (not one the
device itself reported as poor signal) is passed on as a derived `spo2_flagged` observation:
a dip that recovered at once is an artefact once, but dips that keep coming are not.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from processor.normalise import NormalisedObservation, Quality

OXIMETRY_CODES = frozenset({"spo2", "pulse"})
MIN_PERFUSION_INDEX = 0.3
MIN_SIGNAL_QUALITY = 50.0
MAX_SPO2_DROP = 6.0
DROP_WITHIN = timedelta(minutes=5)
#: the derived observation of an SpO2 value flagged for a sudden drop (never stored)
FLAGGED_CODE = "spo2_flagged"


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def poor_signal(context: Mapping[str, Any]) -> str | None:
    """Why the device's own report makes the reading untrustworthy, if it does."""
    perfusion = _number(context.get("perfusion_index"))
    if perfusion is not None and perfusion < MIN_PERFUSION_INDEX:
        return f"perfusion index {perfusion:g} %"
    quality = _number(context.get("signal_quality"))
    if quality is not None and quality < MIN_SIGNAL_QUALITY:
        return f"signal quality {quality:g}"
    if context.get("motion") is True:
        return "motion"
    return None


@dataclass
class _Device:
    #: the last credible SpO2 (time, value): never a flagged one
    credible: tuple[datetime, float] | None = None
    #: the time of the device's latest SpO2 reading, and whether it was suspect
    latest: datetime | None = None
    suspect: bool = False


class Marked(NamedTuple):
    """A reading's observations after the filter, and what it derived for the engine."""

    observations: list[NormalisedObservation]
    derived: list[NormalisedObservation]


class ArtefactFilter:
    """Remembers, per oximeter, its last credible SpO2 and whether its latest reading was suspect."""

    def __init__(self) -> None:
        self._devices: dict[str, _Device] = {}

    def mark(self, observations: list[NormalisedObservation], context: Mapping[str, Any]) -> Marked:
        """The reading's observations, oximetry ones flagged `artefact` if the reading is one."""
        spo2 = next(
            (o for o in observations if o.code == "spo2" and Quality.IMPLAUSIBLE not in o.quality), None
        )
        weak = poor_signal(context) is not None
        if spo2 is None:
            return Marked(self._flagged(observations) if weak else observations, [])
        device = self._devices.setdefault(spo2.device_id, _Device())
        if device.latest is not None and spo2.measured_at <= device.latest:
            # older than what was judged already (a backlog): judged on its own report only
            return Marked(self._flagged(observations) if weak else observations, [])
        dropped = device.credible is not None and (
            timedelta(0) < spo2.measured_at - device.credible[0] <= DROP_WITHIN
            and device.credible[1] - spo2.value >= MAX_SPO2_DROP
        )
        suspect = weak or dropped
        confirmed = suspect and device.suspect  # the second suspect reading in a row: a real low
        device.latest, device.suspect = spo2.measured_at, suspect and not confirmed
        if not suspect or confirmed:
            device.credible = (spo2.measured_at, spo2.value)
            return Marked(observations, [])
        derived = [] if weak or not spo2.live else [replace(spo2, code=FLAGGED_CODE)]
        return Marked(self._flagged(observations), derived)

    @staticmethod
    def _flagged(observations: list[NormalisedObservation]) -> list[NormalisedObservation]:
        return [
            replace(o, quality=(*o.quality, Quality.ARTEFACT))
            if o.code in OXIMETRY_CODES and Quality.ARTEFACT not in o.quality
            else o
            for o in observations
        ]
