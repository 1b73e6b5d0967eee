"""Device lifecycle across the two places a device lives: the registry and the broker.

Each change runs in one database transaction that commits only once the broker applied it,
so a device is never told credentials the broker will refuse, and a revocation that the
broker did not take is not recorded as done.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg

from telehealth.broker.admin import DeviceLogins
from telehealth.storage import devices, uploaders
from telehealth.storage.devices import Credentials


async def provision_device(
    conn: psycopg.AsyncConnection[Any],
    logins: DeviceLogins,
    *,
    device_id: str,
    patient_id: UUID,
    kind: str,
    expected_interval_s: int | None = None,
) -> Credentials:
    async with conn.transaction():
        creds = await devices.provision(
            conn,
            device_id=device_id,
            patient_id=patient_id,
            kind=kind,
            expected_interval_s=expected_interval_s,
        )
        await logins.add_devices([(creds.device_id, creds.password)])
    return creds


async def revoke_device(conn: psycopg.AsyncConnection[Any], logins: DeviceLogins, device_id: str) -> bool:
    """Refuse the device from now on, at the broker (connection dropped) and at the gateway."""
    async with conn.transaction():
        if not await devices.revoke(conn, device_id):
            return False
        if not await uploaders.is_uploader(conn, device_id):  # an uploader has no broker login
            await logins.disable_device(device_id)
    return True


async def reassign_device(
    conn: psycopg.AsyncConnection[Any], logins: DeviceLogins, device_id: str, patient_id: UUID
) -> Credentials:
    """Hand the device to another patient with a new secret; the old connection is dropped."""
    async with conn.transaction():
        creds = await devices.reassign(conn, device_id, patient_id)
        await logins.add_devices([(creds.device_id, creds.password)])
    return creds


async def reissue_device_secret(
    conn: psycopg.AsyncConnection[Any], logins: DeviceLogins, device_id: str
) -> Credentials:
    async with conn.transaction():
        creds = await devices.reissue_secret(conn, device_id)
        await logins.add_devices([(creds.device_id, creds.password)])
    return creds
