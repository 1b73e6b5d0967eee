"""Provisioning simulated patients and their devices (idempotent), for `up` and `simulate`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from telehealth.nhs import with_check_digit
from telehealth.storage.devices import DeviceExists, provision
from telehealth.storage.people import add_patient

DEMO_TEAM = "demo-team"


@dataclass(frozen=True)
class SimDevice:
    device_id: str
    kind: str
    password: str | None


@dataclass(frozen=True)
class SimPatient:
    index: int
    patient_id: UUID
    name: str
    cgm: SimDevice
    oximeter: SimDevice


def nhs_number_for(index: int) -> str:
    """A valid NHS number in the 999 test range, distinct per index."""
    candidate = 999_000_000 + index * 7
    while (number := with_check_digit(str(candidate))) is None:
        candidate += 1
    return number


async def ensure_cohort(url: str, size: int, *, care_team: str = DEMO_TEAM) -> list[SimPatient]:
    """Patients `Sim Patient NNNN` with a CGM and an oximeter each; existing ones are reused."""
    cohort = []
    async with await psycopg.AsyncConnection.connect(url, row_factory=dict_row) as conn:
        for i in range(size):
            name = f"Sim Patient {i:04d}"
            nhs = nhs_number_for(i)
            cur = await conn.execute("SELECT id FROM patients WHERE nhs_number = %s", (nhs,))
            row = await cur.fetchone()
            if row is None:
                row = await add_patient(
                    conn,
                    nhs_number=nhs,
                    name=name,
                    birth_date=date(1950 + i % 50, 1 + i % 12, 1 + i % 28),
                    sex=("female", "male")[i % 2],
                    conditions=["type 1 diabetes"],
                    care_team=care_team,
                )
            patient_id = row["id"]
            devices = [
                await _ensure_device(conn, f"{kind}-{i:05d}", patient_id, kind)
                for kind in ("cgm", "oximeter")
            ]
            cohort.append(SimPatient(i, patient_id, name, devices[0], devices[1]))
            await conn.commit()
    return cohort


async def _ensure_device(
    conn: psycopg.AsyncConnection[Any], device_id: str, patient_id: UUID, kind: str
) -> SimDevice:
    """Provision unless present; an existing device's secret is not recoverable (hashed)."""
    try:
        async with conn.transaction():
            creds = await provision(conn, device_id=device_id, patient_id=patient_id, kind=kind)
    except DeviceExists:
        return SimDevice(device_id, kind, None)
    return SimDevice(device_id, kind, creds.password)
