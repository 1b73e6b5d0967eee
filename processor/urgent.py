"""Which of a batch's readings to store first: those of patients who may have an urgent alert.

A guess on the decoded values, made before any state is read or quality checked; a wrong
guess changes only which transaction commits first, never an alert (`processor.pipeline`).
"""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID

from telehealth.codes import CODES
from telehealth.contracts import AcceptedReading

#: distinct (code, unit, value) answers remembered, at most; then forgotten all at once
REMEMBERED = 65_536


class UrgentGuess:
    """Whether any of a reading's values, in canonical units, may be urgent by
    `may_be_urgent(code, canonical value)` (the engine's default urgent bands).

    Every reading is guessed on twice (while held, and in its batch), and devices repeat few
    distinct values (whole percent, beats per minute, mg/dL), so each (code, unit, value) is
    converted and judged once and remembered: a dictionary look-up per value after that.
    """

    def __init__(self, may_be_urgent: Callable[[str, float], bool]) -> None:
        self._may_be_urgent = may_be_urgent
        self._known: dict[tuple[str, str, float], bool] = {}

    def __call__(self, reading: AcceptedReading) -> bool:
        known = self._known
        for o in reading.observations:
            key = (o.code, o.unit, o.value)
            urgent = known.get(key)
            if urgent is None:
                if len(known) >= REMEMBERED:
                    known.clear()
                urgent = known[key] = self._may_be_urgent(o.code, CODES[o.code].to_canonical(o.value, o.unit))
            if urgent:
                return True
        return False


def urgent_first(
    readings: list[AcceptedReading],
    patient_of: Callable[[str], UUID | None],
    may_be_urgent: Callable[[AcceptedReading], bool],
) -> list[list[AcceptedReading]]:
    """The batch's readings as the transactions to run, in order: those of every patient with
    a reading that `may_be_urgent` first, on their own, then the rest.

    An urgent alert then reaches the screen when its own few readings are normalised and
    stored, not after the whole batch. Each patient's readings stay together and in order, so
    this is the same as two consecutive batches; it only decides what commits first. One part
    when nothing is urgent or everything is; readings of unknown devices are never urgent.
    """
    patients = [patient_of(r.device_id) for r in readings]
    urgent = {p for p, r in zip(patients, readings, strict=True) if p is not None and may_be_urgent(r)}
    if not urgent:
        return [readings]
    first: list[AcceptedReading] = []
    rest: list[AcceptedReading] = []
    for p, r in zip(patients, readings, strict=True):
        (first if p in urgent else rest).append(r)
    return [first, rest] if first and rest else [readings]
