"""Embedded servers whose free port another process takes before they can listen on it.

`free_port` finds a port nothing is bound to, and the server binds it a moment later; in
between, any outgoing connection on the machine can get that port as its local port (same
range). A bench run failed so ("server exited with code 1 before listening"). Here a real
socket holds the port the server is handed first, as that connection would.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from launcher import embedded, mosquitto
from launcher.embedded import EmbeddedKafka, ServerExited
from launcher.mosquitto import EmbeddedMqtt
from launcher.stack import load_or_create


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port bound (not listening) by this process, like an outgoing connection's."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def taken_first(monkeypatch: pytest.MonkeyPatch, held_port: int) -> int:
    """`free_port` answers the held port once, as if it had been free a moment before."""
    real = embedded.free_port
    answers = [held_port]

    def racing(*avoid: int) -> int:
        return answers.pop() if answers else real(*avoid)

    monkeypatch.setattr(embedded, "free_port", racing)
    monkeypatch.setattr(mosquitto, "free_port", racing)
    return held_port


def test_kafka_moves_to_another_port_when_its_own_is_taken(tmp_path: Path, taken_first: int) -> None:
    broker = EmbeddedKafka(tmp_path)
    try:
        bootstrap = broker.start()
        assert broker.port != taken_first
        with socket.create_connection(("127.0.0.1", broker.port), timeout=2):
            pass
        assert bootstrap == f"127.0.0.1:{broker.port}"
        assert "in use" in (tmp_path / "logs" / "kafka.log").read_text()  # the first attempt
    finally:
        broker.stop()


def test_a_port_given_by_the_caller_is_not_changed_and_the_error_shows_the_log(
    tmp_path: Path, held_port: int
) -> None:
    broker = EmbeddedKafka(tmp_path, port=held_port)
    with pytest.raises(ServerExited) as failed:
        broker.start()
    assert failed.value.port_taken
    assert "Address in use" in str(failed.value)
    assert broker.port == held_port


def test_mqtt_moves_to_other_ports_when_one_is_taken(tmp_path: Path, taken_first: int) -> None:
    broker = EmbeddedMqtt(tmp_path)
    logins = load_or_create(tmp_path / "service-logins.json") if broker.secure else None
    try:
        url = broker.start(logins)
        assert taken_first not in (broker.port, broker.tls_port)
        assert broker.port != broker.tls_port
        assert url == f"mqtt://127.0.0.1:{broker.port}"
        with socket.create_connection(("127.0.0.1", broker.port), timeout=2):
            pass
        assert "in use" in (tmp_path / "logs" / "mqtt.log").read_text()  # the first attempt
        # A restart keeps the ports the services already hold.
        first = (broker.port, broker.tls_port)
        broker.stop()
        broker.start(logins)
        assert (broker.port, broker.tls_port) == first
    finally:
        broker.stop()
