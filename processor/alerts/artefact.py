"""Motion and poor-signal artefacts in pulse oximetry. Pure: no I/O but its own memory.

A reading is an artefact when the device says its signal was poor, or when SpO2 drops by more
than physiology allows between two readings:

- `context.perfusion_index` below 0.3 % (too little pulsatile signal to trust the ratio), or
  `context.signal_quality` below 50 (of 100), or `context.motion` true;
- SpO2 at least 6 points below the same device's previous reading taken within 5 minutes.
  Real desaturations in home monitoring develop over minutes; a loose probe or a moving hand
  drops it at once. The next reading is judged against this one (readings the device marked
  as poor signal are no reference), so a low that persists is credible from its second
  reading and alarms then.

Artefacts are stored, flagged `artefact`, and never alarmed on. A low that does not jump (a
gradual fall, or a first reading with no recent predecessor) alarms on its first reading.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from processor.normalise import NormalisedObservation, Quality

OXIMETRY_CODES = frozenset({"spo2", "pulse"})
MIN_PERFUSION_INDEX = 0.3
MIN_SIGNAL_QUALITY = 50.0
MAX_SPO2_DROP = 6.0
DROP_WITHIN = timedelta(minutes=5)


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


class ArtefactFilter:
    """Remembers each oximeter's last SpO2 (time, value) to recognise impossible drops."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[datetime, float]] = {}

    def mark(
        self, observations: list[NormalisedObservation], context: Mapping[str, Any]
    ) -> list[NormalisedObservation]:
        """The reading's observations, oximetry ones flagged `artefact` if the reading is one."""
        spo2 = next(
            (o for o in observations if o.code == "spo2" and Quality.IMPLAUSIBLE not in o.quality), None
        )
        artefact = poor_signal(context) is not None
        if spo2 is not None and not artefact:  # a value the device itself distrusts is no reference
            previous = self._last.get(spo2.device_id)
            if previous is not None and timedelta(0) < spo2.measured_at - previous[0] <= DROP_WITHIN:
                artefact = previous[1] - spo2.value >= MAX_SPO2_DROP
            if previous is None or spo2.measured_at > previous[0]:
                self._last[spo2.device_id] = (spo2.measured_at, spo2.value)
        if not artefact:
            return observations
        return [
            replace(o, quality=(*o.quality, Quality.ARTEFACT))
            if o.code in OXIMETRY_CODES and Quality.ARTEFACT not in o.quality
            else o
            for o in observations
        ]
