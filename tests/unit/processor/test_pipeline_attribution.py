"""Which registry entry a reading is attributed by (`processor.pipeline.owner`): none for an
unknown or revoked device, and none for a reading received before the device's current
assignment began."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from processor.pipeline import owner
from telehealth.contracts import AcceptedReading
from telehealth.storage.devices import DeviceEntry

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def reading(device: str, received_at: datetime) -> AcceptedReading:
    return AcceptedReading.model_validate(
        {
            "device_id": device,
            "seq": 1,
            "measured_at": received_at,
            "received_at": received_at,
            "observations": [{"code": "glucose", "value": 6.0, "unit": "mmol/L"}],
        }
    )


def test_a_provisioned_device_attributes_every_reading_to_its_patient() -> None:
    entry = DeviceEntry("cgm-1", uuid4(), "cgm", revoked=False)
    assert owner(reading("cgm-1", NOW - timedelta(days=30)), {"cgm-1": entry}) is entry


def test_unknown_and_revoked_devices_attribute_nothing() -> None:
    # revoked entries reach `owner` as None (`Pipeline._entries`); unknown ones are None too
    assert owner(reading("cgm-x", NOW), {"cgm-x": None}) is None


def test_a_reading_received_before_the_reassignment_is_not_the_new_patients() -> None:
    entry = DeviceEntry("cgm-1", uuid4(), "cgm", revoked=False, assigned_at=NOW)
    entries: dict[str, DeviceEntry | None] = {"cgm-1": entry}
    assert owner(reading("cgm-1", NOW - timedelta(milliseconds=1)), entries) is None
    assert owner(reading("cgm-1", NOW), entries) is entry
    assert owner(reading("cgm-1", NOW + timedelta(milliseconds=100)), entries) is entry
