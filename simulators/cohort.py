"""Provisioning simulated patients and their devices (idempotent), for `up`, `simulate` and
the bench. The simulator holds every device's MQTT password: a device provisioned by an
earlier run gets a new one, since only hashes are stored. Broker logins are created in one
batch at the end (thousands of devices, one round trip per chunk); should the broker refuse,
the next run issues new secrets again."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from simulators.scenario import Kind, Scenario, load
from telehealth.broker.admin import DeviceLogins
from telehealth.nhs import with_check_digit
from telehealth.storage.devices import owner_of, provision, reissue_secret
from telehealth.storage.people import add_patient, patient_by_nhs_number
from telehealth.storage.thresholds import save_thresholds, threshold_history
from telehealth.thresholds import Thresholds

DEMO_TEAM = "demo-team"
PREFIX: dict[Kind, str] = {"cgm": "cgm", "glucometer": "meter", "oximeter": "oximeter"}
SPOT_CHECK_INTERVAL_S = 8 * 3600


@dataclass(frozen=True)
class ProvisionedDevice:
    device_id: str
    kind: Kind
    password: str


@dataclass(frozen=True)
class SimPatient:
    index: int
    patient_id: UUID
    name: str
    devices: dict[Kind, ProvisionedDevice]


def nhs_number_for(index: int) -> str:
    """A valid NHS number in the 999 test range, distinct per index."""
    candidate = 999_000_000 + index * 7
    while (number := with_check_digit(str(candidate))) is None:
        candidate += 1
    return number


def device_id_for(kind: Kind, index: int) -> str:
    """The device id of patient number `index` (offset included): one patient, one set of ids."""
    return f"{PREFIX[kind]}-{index:05d}"


async def ensure_cohort(
    url: str,
    size: int,
    *,
    logins: DeviceLogins,
    scenario: Scenario | str = "normal",
    care_team: str = DEMO_TEAM,
    first: int = 0,
) -> list[SimPatient]:
    """Patients `Sim Patient NNNN` with the devices their scenario gives them; existing
    patients and devices are reused. COPD patients get NEWS2 SpO2 scale 2 thresholds.
    `first` numbers patients and devices from there, so two cohorts can live side by side."""
    spec_of = scenario if isinstance(scenario, Scenario) else load(scenario)
    cohort = []
    async with await psycopg.AsyncConnection.connect(url, row_factory=dict_row) as conn:
        for i in range(size):
            spec = spec_of.patient(i)
            async with conn.transaction():
                n = first + i
                patient_id = await _ensure_patient(conn, n, care_team, spec.glucose, spec.oximetry)
                if spec.thresholds is not None:
                    await _ensure_thresholds(conn, patient_id, spec.thresholds)
                devices = {}
                for kind in spec.kinds:
                    interval = (
                        SPOT_CHECK_INTERVAL_S if kind == "oximeter" and spec.oximeter == "spot" else None
                    )
                    devices[kind] = await _ensure_device(
                        conn, device_id_for(kind, n), patient_id, kind, interval
                    )
            cohort.append(SimPatient(i, patient_id, f"Sim Patient {n:04d}", devices))
    await logins.add_devices([(d.device_id, d.password) for p in cohort for d in p.devices.values()])
    return cohort


async def _ensure_patient(
    conn: psycopg.AsyncConnection[Any], i: int, care_team: str, glucose: str, oximetry: str
) -> UUID:
    nhs = nhs_number_for(i)
    known = await patient_by_nhs_number(conn, nhs)
    if known is not None:
        return known
    conditions = [{"t1": "type 1 diabetes", "t2": "type 2 diabetes"}[glucose]]
    if oximetry == "copd":
        conditions.append("COPD")
    created = await add_patient(
        conn,
        nhs_number=nhs,
        name=f"Sim Patient {i:04d}",
        birth_date=date(1950 + i % 50, 1 + i % 12, 1 + i % 28),
        sex=("female", "male")[i % 2],
        conditions=conditions,
        care_team=care_team,
    )
    return UUID(str(created["id"]))


async def _ensure_thresholds(
    conn: psycopg.AsyncConnection[Any], patient_id: UUID, wanted: Thresholds
) -> None:
    """Only when none are set: a clinician's later change wins over the simulator's default."""
    if not await threshold_history(conn, patient_id):
        await save_thresholds(conn, patient_id, wanted, "simulator")


async def _ensure_device(
    conn: psycopg.AsyncConnection[Any], device_id: str, patient_id: UUID, kind: Kind, interval_s: int | None
) -> ProvisionedDevice:
    if await owner_of(conn, device_id) is None:
        creds = await provision(
            conn, device_id=device_id, patient_id=patient_id, kind=kind, expected_interval_s=interval_s
        )
    else:
        creds = await reissue_secret(conn, device_id, patient_id=patient_id)
    return ProvisionedDevice(device_id, kind, creds.password)
