"""Device provisioning: returns the MQTT credentials once."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from dashboard_api.auditing import Audit
from dashboard_api.deps import AdminUser, ConnDep
from dashboard_api.problems import documented
from dashboard_api.schemas import DeviceCredentials, DeviceIn
from telehealth.storage.devices import DeviceExists, provision
from telehealth.topics import readings_topic, status_topic

router = APIRouter(prefix="/api/v1/devices", tags=["devices"])


@router.post(
    "", status_code=status.HTTP_201_CREATED, responses={409: documented("device id already provisioned")}
)
async def provision_device(body: DeviceIn, conn: ConnDep, _: AdminUser, audit: Audit) -> DeviceCredentials:
    cur = await conn.execute("SELECT 1 FROM patients WHERE id = %s", (body.patient_id,))
    if await cur.fetchone() is None:
        raise HTTPException(404, f"no patient {body.patient_id}")
    try:
        async with conn.transaction():
            creds = await provision(
                conn,
                device_id=body.device_id,
                patient_id=body.patient_id,
                kind=body.kind,
                expected_interval_s=body.expected_interval_s,
            )
            await audit("device.provision", body.patient_id, device_id=body.device_id, kind=body.kind)
    except DeviceExists as exc:
        raise HTTPException(409, str(exc)) from exc
    return DeviceCredentials(
        device_id=creds.device_id,
        patient_id=creds.patient_id,
        mqtt_username=creds.username,
        mqtt_password=creds.password,
        readings_topic=readings_topic(creds.device_id),
        status_topic=status_topic(creds.device_id),
    )
