"""`telehealth simulate`: a cohort of simulated patients publishing in (accelerated) real time.

Physiology runs `speed` times faster than the clock from 08:00 on day 0; readings carry the
real time they are sent, so the pipeline sees on-time data at `speed` times the normal rate.
What each device sends comes from the scenario's `Cohort`, the same ground truth the tests use.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from simulators.cohort import SimPatient
from simulators.publisher import Publisher, PublishStats
from simulators.scenario import START_MIN, Cohort, load

log = logging.getLogger(__name__)


@dataclass
class _Device:
    device_id: str
    patient: int
    kind: str
    interval_s: float
    next_due: float
    seq: int


async def simulate(
    cohort: list[SimPatient],
    mqtt_url: str,
    *,
    scenario: str = "normal",
    speed: float = 1.0,
    duration_s: float | None = None,
    seed: int = 1,
    stop: asyncio.Event | None = None,
    start_seq: int | None = None,
) -> PublishStats:
    """Publish until `duration_s` real seconds pass or `stop` is set; returns what was sent."""
    sensors = Cohort(load(scenario), len(cohort), seed)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    started = loop.time()
    base_seq = start_seq if start_seq is not None else int(started * 1000) % 10**12
    devices = []
    for p in cohort:
        for kind, device_id in (("cgm", p.cgm.device_id), ("oximeter", p.oximeter.device_id)):
            interval = sensors.interval(p.index, kind) * 60 / speed
            offset = (p.index % 50) / 50 * interval
            devices.append(_Device(device_id, p.index, kind, interval, started + offset, base_seq))
    publisher = Publisher(mqtt_url)
    await publisher.connect()
    for d in devices:
        publisher.publish_status(d.device_id, "online", 90)
    try:
        while not stop.is_set():
            now = loop.time()
            if duration_s is not None and now - started >= duration_s:
                break
            sim_minute = START_MIN + (now - started) * speed / 60
            for d in devices:
                if d.next_due > now:
                    continue
                d.next_due += d.interval_s
                d.seq += 1
                sample = sensors.sample(d.patient, d.kind, sim_minute)
                publisher.publish_reading(d.device_id, d.seq, sample.observations)
            await asyncio.sleep(0.02)
    finally:
        await publisher.close()
    log.info(
        "simulator sent %d messages, %d acknowledged by the broker",
        publisher.stats.sent,
        publisher.stats.acked,
    )
    return publisher.stats
