"""Test data: users, patients and devices created through the real storage code."""

from __future__ import annotations

import itertools
from datetime import date, datetime
from typing import Any
from uuid import UUID

import psycopg

from simulators.cohort import nhs_number_for
from telehealth.contracts import wire_time
from telehealth.storage.devices import Credentials, provision
from telehealth.storage.people import add_patient, add_user, issue_token

_counter = itertools.count(5000)
_addresses = itertools.count(1)


async def make_user(
    conn: psycopg.AsyncConnection[Any],
    role: str,
    teams: list[str] | None = None,
    patient_id: UUID | None = None,
) -> str:
    """A user with a fresh name; returns its bearer token."""
    user = await add_user(
        conn,
        f"{role}-{next(_counter)}",
        role,
        password="correct horse",
        care_teams=teams,
        patient_id=patient_id,
    )
    return await issue_token(conn, user.id)


async def make_patient(conn: psycopg.AsyncConnection[Any], team: str) -> UUID:
    i = next(_counter)
    row = await add_patient(
        conn,
        nhs_number=nhs_number_for(i),
        name=f"Test Patient {i}",
        birth_date=date(1970, 1, 1),
        sex="female",
        conditions=["t1d"],
        care_team=team,
    )
    patient_id: UUID = row["id"]
    return patient_id


async def make_device(conn: psycopg.AsyncConnection[Any], patient_id: UUID, kind: str = "cgm") -> Credentials:
    return await provision(conn, device_id=f"{kind}-t{next(_counter)}", patient_id=patient_id, kind=kind)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def reading(
    device_id: str, seq: int, at: datetime, observations: list[dict[str, Any]], **extra: Any
) -> dict[str, Any]:
    return {
        "device_id": device_id,
        "seq": seq,
        "measured_at": wire_time(at),
        "observations": observations,
        **extra,
    }


async def alerts_of(db: psycopg.AsyncConnection[Any], patient: Any) -> list[dict[str, Any]]:
    cur = await db.execute(
        "SELECT rule, severity, status, code, value, seq, message FROM alerts"
        " WHERE patient_id = %s ORDER BY id",
        (patient,),
    )
    return await cur.fetchall()


def contract_example(**overrides: object) -> dict[str, object]:
    """The contract's example reading (docs/contract.md) as a document, with fields replaced."""
    base: dict[str, object] = {
        "device_id": "oxi-000123",
        "seq": 1042,
        "measured_at": "2026-11-23T08:15:02Z",
        "observations": [
            {"code": "spo2", "value": 94, "unit": "%"},
            {"code": "pulse", "value": 88, "unit": "/min"},
        ],
        "battery_pct": 71,
        "context": {"supplemental_o2": False},
    }
    return base | overrides


def client_address() -> dict[str, str]:
    """A fresh client address (the API trusts X-Forwarded-For from the tests' local proxy), so
    one test's failed logins or attempts do not throttle another's."""
    n = next(_addresses)
    return {"X-Forwarded-For": f"198.51.{n // 250}.{n % 250 + 1}"}
