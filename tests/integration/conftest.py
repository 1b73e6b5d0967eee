"""Fixtures shared by the integration tests (the session's servers are in tests/conftest.py)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import pytest

from launcher.stack import Services
from simulators.publisher import Publisher
from telehealth.settings import Settings

_clients = itertools.count(1)


@pytest.fixture
async def device_publisher(settings: Settings, services: Services) -> AsyncIterator[Publisher]:
    """A QoS 1 publisher on the relay login: it may publish as any device (tests only)."""
    assert settings.mqtt_url
    publisher = Publisher(settings.mqtt_relay_url(), client_id=f"test-{id(services)}-{next(_clients)}")
    await publisher.connect()
    yield publisher
    await publisher.close()


@pytest.fixture
def publisher(device_publisher: Publisher) -> Publisher:
    """The same publisher, under the name the consent, research and bad-input tests use."""
    return device_publisher
