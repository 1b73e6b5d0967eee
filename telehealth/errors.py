"""Root of the exception tree.

    TelehealthError
    ├── DeviceExists          provisioning an id that is taken (storage.devices)
    ├── DeviceBelongsToAnother  a new secret asked for another patient's device (storage.devices)
    ├── AlertNotFound         no such alert in the caller's care teams (storage.alerts)
    ├── AlertStateConflict    the alert's state does not allow the transition (storage.alerts)
    ├── MigrationError        database and migration files disagree (storage.migrate)
    ├── BrokerAdminError      the broker refused an admin command (broker.admin)
    ├── RollupMismatch        a research cell without its histogram (storage.research_hourly)
    └── StorageError          the database refused or is away (retriable)
        └── RegistryUnavailable   device registry unreachable and the device not cached

`retriable` drives the choice between retry and dead letter, as in aiokafka.
"""

from __future__ import annotations


class TelehealthError(Exception):
    retriable = False


class StorageError(TelehealthError):
    retriable = True
