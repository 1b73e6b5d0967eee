"""Root of the exception tree.

    TelehealthError
    ├── DeviceExists          provisioning an id that is taken (storage.devices)
    ├── DeviceBelongsToAnother  a new secret asked for another patient's device (storage.devices)
    └── StorageError          the database refused or is away (retriable)
        └── RegistryUnavailable   device registry unreachable and the device not cached

`retriable` drives the choice between retry and dead letter, as in aiokafka.
"""

from __future__ import annotations


class TelehealthError(Exception):
    retriable = False


class StorageError(TelehealthError):
    retriable = True
