"""The stale-data sweep runs over slices of the patients in turn (`processor.alerts.store.silences`)."""

from __future__ import annotations

from typing import Any

import psycopg

from processor.alerts.store import silences
from tests.factories import make_device, make_patient


async def test_slices_cover_every_device_once_and_keep_a_patients_devices_together(
    db: psycopg.AsyncConnection[Any],
) -> None:
    patients = [await make_patient(db, "team-sweep") for _ in range(12)]
    ours = set()
    for p in patients:
        for kind in ("cgm", "oximeter"):
            ours.add((p, (await make_device(db, p, kind)).device_id))

    def seen(rows: list[Any]) -> set[tuple[Any, str]]:
        return {(s.patient_id, s.device_id) for s in rows if s.patient_id in patients}

    whole = seen(await silences(db))
    assert whole == ours
    slices = [seen(await silences(db, (i, 4))) for i in range(4)]
    assert set().union(*slices) == whole
    assert sum(len(s) for s in slices) == len(whole)  # no device in two slices
    for p in patients:
        assert sum(1 for s in slices if any(pid == p for pid, _ in s)) == 1, "a patient in one slice"
    assert sum(1 for s in slices if s) > 1, "12 patients all in one of 4 slices: not sliced"
