"""Devices: provisioning (credentials shown once), revocation and re-assignment.

Each change applies to the registry and the broker's logins together (telehealth.provisioning);
when the broker cannot take it, nothing is changed and the answer is 503.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, HTTPException, status

from dashboard_api.auditing import Audit
from dashboard_api.deps import AdminUser, ConnDep, SettingsDep
from dashboard_api.problems import documented
from dashboard_api.schemas import (
    DeviceCredentials,
    DeviceIn,
    DeviceReassign,
    DeviceRevoked,
    UploaderCredentialsOut,
)
from telehealth.broker.admin import BrokerAdminError, DeviceLogins, device_logins
from telehealth.provisioning import provision_device, reassign_device, revoke_device
from telehealth.storage import devices, uploaders
from telehealth.storage.devices import Credentials, DeviceExists
from telehealth.storage.people import patient_exists
from telehealth.topics import readings_topic, status_topic

router = APIRouter(prefix="/api/v1/devices", tags=["devices"])


async def get_logins(settings: SettingsDep) -> AsyncIterator[DeviceLogins]:
    try:
        async with device_logins(settings) as logins:
            yield logins
    except BrokerAdminError as exc:
        raise HTTPException(503, f"the device broker did not take the change: {exc}") from exc


LoginsDep = Annotated[DeviceLogins, Depends(get_logins)]


def _credentials(creds: Credentials, settings: SettingsDep) -> DeviceCredentials:
    return DeviceCredentials(
        device_id=creds.device_id,
        patient_id=creds.patient_id,
        mqtt_username=creds.username,
        mqtt_password=creds.password,
        mqtt_url=settings.mqtt_device_url,
        readings_topic=readings_topic(creds.device_id),
        status_topic=status_topic(creds.device_id),
    )


def _uploader(creds: uploaders.UploaderCredentials) -> UploaderCredentialsOut:
    return UploaderCredentialsOut(
        device_id=creds.device_id,
        patient_id=creds.patient_id,
        api_secret=creds.api_secret,
        api_secret_sha1=creds.api_secret_sha1,
        access_token=creds.access_token,
    )


async def _owner(conn: ConnDep, device_id: str) -> UUID | None:
    return await devices.owner_of(conn, device_id)


async def _patient_exists(conn: ConnDep, patient_id: UUID) -> None:
    if not await patient_exists(conn, patient_id):
        raise HTTPException(404, f"no patient {patient_id}")


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={409: documented("device id already provisioned"), 503: documented("broker unavailable")},
)
async def provision(
    body: DeviceIn, conn: ConnDep, logins: LoginsDep, settings: SettingsDep, _: AdminUser, audit: Audit
) -> DeviceCredentials | UploaderCredentialsOut:
    """MQTT credentials for a device; for an `uploader` (Nightscout apps) an API secret and an
    access token instead (docs/nightscout.md)."""
    await _patient_exists(conn, body.patient_id)
    try:
        async with conn.transaction():
            if body.kind == uploaders.KIND:
                made = await uploaders.provision(
                    conn,
                    device_id=body.device_id,
                    patient_id=body.patient_id,
                    expected_interval_s=body.expected_interval_s,
                )
                await audit("device.provision", body.patient_id, device_id=body.device_id, kind=body.kind)
                return _uploader(made)
            creds = await provision_device(
                conn,
                logins,
                device_id=body.device_id,
                patient_id=body.patient_id,
                kind=body.kind,
                expected_interval_s=body.expected_interval_s,
            )
            await audit("device.provision", body.patient_id, device_id=body.device_id, kind=body.kind)
    except DeviceExists as exc:
        raise HTTPException(409, str(exc)) from exc
    return _credentials(creds, settings)


@router.post(
    "/{device_id}/revoke",
    responses={404: documented("no such active device"), 503: documented("broker unavailable")},
)
async def revoke(
    device_id: str, conn: ConnDep, logins: LoginsDep, _: AdminUser, audit: Audit
) -> DeviceRevoked:
    """Refused at once: the broker login is disabled, an open connection dropped, and the
    gateway or the processor dead-letters anything still in flight as `revoked_device`."""
    async with conn.transaction():
        if not await revoke_device(conn, logins, device_id):
            raise HTTPException(404, f"no active device {device_id!r}")
        await audit("device.revoke", await _owner(conn, device_id), device_id=device_id)
    return DeviceRevoked(device_id=device_id, revoked=True)


@router.post(
    "/{device_id}/reassign",
    responses={404: documented("no such patient or active device"), 503: documented("broker unavailable")},
)
async def reassign(
    device_id: str,
    body: DeviceReassign,
    conn: ConnDep,
    logins: LoginsDep,
    settings: SettingsDep,
    _: AdminUser,
    audit: Audit,
) -> DeviceCredentials | UploaderCredentialsOut:
    """Give the device to another patient: a new secret, and the old holder disconnected (an
    uploader: a new API secret and token, the old ones refused)."""
    await _patient_exists(conn, body.patient_id)
    try:
        async with conn.transaction():
            previous = await _owner(conn, device_id)
            made: Credentials | uploaders.UploaderCredentials
            if await uploaders.is_uploader(conn, device_id):
                made = await uploaders.reissue(conn, device_id, body.patient_id)
            else:
                made = await reassign_device(conn, logins, device_id, body.patient_id)
            await audit("device.reassign", previous, device_id=device_id, to_patient=str(body.patient_id))
            await audit("device.reassign", body.patient_id, device_id=device_id, from_patient=str(previous))
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from exc
    if isinstance(made, uploaders.UploaderCredentials):
        return _uploader(made)
    return _credentials(made, settings)
