"""CPU per reading of each stage of the gateway and the processor that needs no server, in this process.

    python -m bench.stages [--readings 20000] [--batch 2000] [--ack-group 200] [--rounds 3]

No servers: the stages that touch no network run on oximeter readings like the load
generator's (SpO2 and pulse, one reading per message), batch by batch, with the services'
garbage-collector settings. The gateway's MQTT client reads the messages from a socket pair
and acknowledges them (`bench.mqtt_read`); its spool is timed on a file of its own in a
temporary directory: written in groups of `--ack-group` records (fsynced, as the gateway's
acks are), read back for confirmation and forgotten, its CPU including the spool's thread.
What a stage costs here is a floor for what it costs in a service; the end-to-end CPU per
reading (`telehealth bench`) adds the brokers' clients, the database driver and the event
loop. Each figure is the best of `--rounds`, as a change's effect shows best without the
machine's other work in it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka.structs import ConsumerRecord

from bench import mqtt_read
from gateway.keeper import CHUNK
from gateway.records import Outgoing
from gateway.spool import READING, Mark, Spool
from launcher.cli import tune_gc
from processor.alerts.engine import alarmable
from processor.decode import decode
from processor.pipeline import Pipeline, owner
from processor.sink import ReadingSink
from processor.urgent import urgent_first
from telehealth.checks import check_readings
from telehealth.contracts import accepted_json
from telehealth.settings import Settings
from telehealth.storage.devices import CachedRegistry, DeviceEntry
from telehealth.topics import readings_topic

DEVICES = 2_000


def payload(device_id: str, seq: int, measured_at: datetime) -> dict[str, Any]:
    return {
        "device_id": device_id,
        "seq": seq,
        "measured_at": measured_at.isoformat(),
        "observations": [
            {"code": "spo2", "value": 97, "unit": "%"},
            {"code": "pulse", "value": 70, "unit": "/min"},
        ],
    }


def run(readings: int, batch: int, rounds: int, ack_group: int = 200) -> dict[str, float]:
    """Microseconds of CPU per reading for each stage, best of `rounds` (with the caller's
    garbage-collector settings: `python -m bench.stages` takes the services')."""
    now = datetime.now(UTC)
    devices = [f"ox-{k:05d}" for k in range(DEVICES)]
    entries: dict[str, DeviceEntry | None] = {
        d: DeviceEntry(d, uuid.uuid4(), "oximeter", False) for d in devices
    }
    messages = []
    for i in range(readings):
        body = payload(devices[i % DEVICES], i, now - timedelta(milliseconds=readings - i))
        messages.append((readings_topic(body["device_id"]), json.dumps(body).encode()))
    best: dict[str, float] = {}
    for _ in range(rounds):
        for stage, spent in _round(messages, entries, batch, ack_group, now).items():
            per = spent / readings
            best[stage] = min(per, best.get(stage, per))
    return best


def _round(
    messages: list[tuple[str, bytes]],
    entries: dict[str, DeviceEntry | None],
    batch: int,
    ack_group: int,
    now: datetime,
) -> dict[str, float]:
    """Microseconds of CPU each stage spent on all the messages, by a fresh processor."""
    settings = Settings()
    pipeline = Pipeline(settings, None, CachedRegistry("postgresql://unused"))  # type: ignore[arg-type]
    spent: dict[str, float] = {}

    def timed(stage: str, call: Callable[[], Any]) -> Any:
        started = time.process_time()
        result = call()
        spent[stage] = 1e6 * (time.process_time() - started)
        return result

    def patient_of(device_id: str) -> uuid.UUID | None:
        entry = entries.get(device_id)
        return entry.patient_id if entry is not None else None

    arrived = timed("gateway: MQTT read and ack (paho)", lambda: mqtt_read.cycle(messages, ack_group))
    if arrived != len(messages):
        raise RuntimeError(f"{arrived} of {len(messages)} bench messages were read")
    values = timed(
        "gateway: check and Kafka value", lambda: [_route(t, b, now, entries) for t, b in messages]
    )
    timed("gateway: spool (write, confirm, forget)", lambda: asyncio.run(_spool_cycle(values, ack_group)))
    records = [
        ConsumerRecord(settings.readings_topic, 0, i, 0, 0, o.key, o.value, None, 0, 0, [])
        for i, o in enumerate(values)
    ]
    chunks = [records[i : i + batch] for i in range(0, len(records), batch)]
    decoded = timed("processor: decode", lambda: [decode(c, settings) for c in chunks])
    if letters := [lt.letter for b in decoded for lt in b.letters]:  # an error path is no figure
        raise RuntimeError(f"the processor refused a bench reading: {letters[0].detail}")
    timed(
        "processor: urgent guess",
        lambda: [urgent_first(b.readings, patient_of, pipeline._urgent) for b in decoded],
    )
    prepared = timed(
        "processor: normalise and artefacts",
        lambda: [pipeline._prepare([r for r in b.readings if owner(r, entries)], entries) for b in decoded],
    )

    def sink_rows() -> list[list[Any]]:
        out = []
        for part in prepared:
            sink, observations = ReadingSink(), []
            for p in part:
                if sink.add(p.reading, p.patient_id, p.observations):
                    observations.extend(p.observations)
            out.append(observations)
        return out

    observed = timed("processor: rows for COPY", sink_rows)

    def alerting() -> None:
        for observations in observed:
            _ = {o.patient_id for o in observations if alarmable(o)}
            derived = pipeline._trends.derive(observations)
            pipeline._engine.evaluate(observations + derived, {}, {}, {})

    timed("processor: trend and alert rules", alerting)
    return spent


def _route(topic: str, body: bytes, now: datetime, entries: dict[str, DeviceEntry | None]) -> Outgoing:
    """What the gateway does for one message between paho and aiokafka (`Gateway._route`)."""
    verdict = check_readings(topic, body, now, entries.get)
    if verdict.rejected:
        raise RuntimeError(f"the gateway refused a bench reading: {verdict.rejected[0].detail}")
    (reading,) = verdict.accepted
    value = accepted_json(reading, verdict.received_at)
    mark = Mark(READING, reading.device_id, reading.seq)
    return Outgoing("readings", reading.device_id.encode(), value, mark=mark)


async def _spool_cycle(values: list[Outgoing], ack_group: int) -> None:
    """What the gateway's spool does for each record: written with its group of acks, its mark
    read back by the keeper, forgotten once stored (here: at once)."""
    with tempfile.TemporaryDirectory(prefix="bench-spool-") as scratch:
        spool = Spool(Path(scratch) / "spool.sqlite3", len(values) + 1)
        try:
            for k in range(0, len(values), ack_group):
                await spool.add(
                    [(o.topic, o.key, o.value, o.mark) for o in values[k : k + ack_group] if o.mark]
                )
            while marks := await spool.marks(CHUNK):
                await spool.forget([i for i, _ in marks])
        finally:
            spool.close()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.stages", description=__doc__.split("\n\n")[0])
    p.add_argument("--readings", type=int, default=20_000)
    p.add_argument("--batch", type=int, default=2_000, help="readings per processor batch")
    p.add_argument("--ack-group", type=int, default=200, help="records per spool write (group of acks)")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    figures = run(args.readings, args.batch, args.rounds, args.ack_group)
    for stage, us in figures.items():
        print(f"{stage:40s} {us:7.2f} µs per reading")
    for service in ("gateway", "processor"):
        total = sum(us for stage, us in figures.items() if stage.startswith(service))
        print(f"{service + ' stages in all':40s} {total:7.2f} µs per reading")


if __name__ == "__main__":
    tune_gc()  # here, not in `run`: it would change the collector of whatever process called it
    main()
