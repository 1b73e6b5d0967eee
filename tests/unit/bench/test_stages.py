"""`python -m bench.stages`: every stage is timed on readings that pass it."""

from __future__ import annotations

import pytest

from bench import stages


def test_every_stage_is_timed_per_reading() -> None:
    figures = stages.run(readings=300, batch=100, rounds=1)
    assert set(figures) == {
        "gateway: MQTT read and ack (paho)",
        "gateway: check and Kafka value",
        "gateway: spool (write, confirm, forget)",
        "processor: decode",
        "processor: urgent guess",
        "processor: normalise and artefacts",
        "processor: rows for COPY",
        "processor: trend and alert rules",
    }
    assert all(us > 0 for us in figures.values())


def test_the_command_prints_each_stage_and_the_processor_in_all(capsys: pytest.CaptureFixture[str]) -> None:
    """(A reading the gateway refused or the processor dead-lettered would time an error path:
    `run` raises then, so the figures above are of readings every stage accepted.)"""
    stages.main(["--readings", "200", "--batch", "50", "--rounds", "1"])
    out = capsys.readouterr().out
    assert "gateway stages in all" in out and "processor stages in all" in out
    assert out.count("µs per reading") == 10


def test_a_refused_reading_stops_the_bench(monkeypatch: pytest.MonkeyPatch) -> None:
    def unknown_code(device_id: str, seq: int, measured_at: object) -> dict[str, object]:
        body = payload(device_id, seq, measured_at)  # type: ignore[arg-type]
        body["observations"] = [{"code": "spo2", "value": 97, "unit": "furlongs"}]
        return body

    payload = stages.payload
    monkeypatch.setattr(stages, "payload", unknown_code)
    with pytest.raises(RuntimeError, match="refused a bench reading"):
        stages.run(readings=10, batch=10, rounds=1)
