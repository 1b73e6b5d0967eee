"""Batched, idempotent writes of readings (`telehealth.storage.readings` holds the SQL).

`add()` buffers; `flush()` writes inside the caller's transaction and returns the keys
that were new, so duplicates (redelivery, replay) are neither stored nor alarmed on twice.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg

from processor.normalise import NormalisedObservation
from telehealth.contracts import AcceptedReading
from telehealth.storage.readings import READINGS, RECEIPTS, Key, merge, prepare

__all__ = ["READINGS", "RECEIPTS", "Key", "ReadingSink", "prepare"]


class ReadingSink:
    def __init__(self) -> None:
        self._receipts: list[tuple[Any, ...]] = []
        self._rows: list[tuple[Any, ...]] = []
        self._keys: set[Key] = set()

    def __len__(self) -> int:
        return len(self._receipts)

    def add(
        self, reading: AcceptedReading, patient_id: UUID, observations: list[NormalisedObservation]
    ) -> bool:
        """Buffer a reading; False if the same (device_id, seq) is already buffered."""
        key = (reading.device_id, reading.seq)
        if key in self._keys:
            return False
        self._keys.add(key)
        self._receipts.append(
            (
                reading.device_id,
                reading.seq,
                patient_id,
                reading.measured_at,
                reading.received_at,
                reading.battery_pct,
                reading.context,
            )
        )
        for o in observations:
            self._rows.append(
                (
                    o.patient_id,
                    o.measured_at,
                    o.code,
                    o.value,
                    o.unit,
                    o.loinc,
                    o.source,
                    o.device_id,
                    o.seq,
                    o.received_at,
                    [q.value for q in o.quality],
                )
            )
        return True

    async def flush(self, conn: psycopg.AsyncConnection[Any]) -> set[Key]:
        """Write the buffer in the open transaction; returns the (device_id, seq) newly stored."""
        if not self._receipts:
            return set()
        fresh = await merge(conn, self._receipts, self._rows)
        self._receipts.clear()
        self._rows.clear()
        self._keys.clear()
        return fresh
