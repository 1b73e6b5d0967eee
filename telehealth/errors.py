"""Root of the exception tree.

    TelehealthError
    ├── ConfigurationError   the operator must change a setting
    ├── StorageError         the database refused or is away (retriable)
    └── BrokerError          Kafka or MQTT refused or is away (retriable)

`retriable` drives the choice between retry and dead letter, as in aiokafka.
"""

from __future__ import annotations


class TelehealthError(Exception):
    retriable = False


class ConfigurationError(TelehealthError):
    pass


class StorageError(TelehealthError):
    retriable = True


class BrokerError(TelehealthError):
    retriable = True
