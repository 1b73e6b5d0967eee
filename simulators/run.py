"""`telehealth simulate`: a cohort of simulated patients publishing in (accelerated) real time.

Physiology runs `speed` times faster than the clock; readings carry the real time they are
sent, so the pipeline sees on-time data at `speed` times the normal rate.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from simulators.cohort import SimPatient
from simulators.physiology import COPD, HEALTHY, T1, T2, CgmSensor, Glucose, GlucoseEvent, Oximeter
from simulators.publisher import Publisher, PublishStats

log = logging.getLogger(__name__)

SCENARIOS = ("normal", "hypo")
CGM_INTERVAL_S = 300
OXIMETER_INTERVAL_S = 60


@dataclass
class _Device:
    device_id: str
    interval_s: float
    next_due: float
    seq: int
    patient: SimPatient


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
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    started = loop.time()
    base_seq = start_seq if start_seq is not None else int(started * 1000) % 10**12
    start_min = 8 * 60  # simulated clocks start at 08:00 on day 0
    hypo = (GlucoseEvent("overdose", at_min=start_min + 10, size=7.0),)
    glucose = {
        p.index: CgmSensor(
            Glucose(
                T1 if p.index % 3 else T2,
                seed * 100_003 + p.index,
                hypo if scenario == "hypo" and p.index == 0 else (),
            ),
            seed=seed * 300_007 + p.index,
        )
        for p in cohort
    }
    oximetry = {
        p.index: Oximeter(COPD if p.index % 5 == 4 else HEALTHY, seed * 200_003 + p.index) for p in cohort
    }
    devices = []
    for p in cohort:
        offset = (p.index % 50) / 50
        devices.append(
            _Device(
                p.cgm.device_id,
                CGM_INTERVAL_S / speed,
                started + offset * CGM_INTERVAL_S / speed,
                base_seq,
                p,
            )
        )
        devices.append(
            _Device(
                p.oximeter.device_id,
                OXIMETER_INTERVAL_S / speed,
                started + offset * OXIMETER_INTERVAL_S / speed,
                base_seq,
                p,
            )
        )
    publisher = Publisher(mqtt_url)
    await publisher.connect()
    for d in devices:
        publisher.publish_status(d.device_id, "online", 90)
    try:
        while not stop.is_set():
            now = loop.time()
            if duration_s is not None and now - started >= duration_s:
                break
            sim_minute = start_min + (now - started) * speed / 60
            for d in devices:
                if d.next_due > now:
                    continue
                d.next_due += d.interval_s
                d.seq += 1
                if d.device_id.startswith("cgm"):
                    obs = [
                        {
                            "code": "glucose",
                            "value": glucose[d.patient.index].read(sim_minute),
                            "unit": "mmol/L",
                            "source": "cgm",
                        }
                    ]
                else:
                    spo2, pulse = oximetry[d.patient.index].read(sim_minute)
                    obs = [
                        {"code": "spo2", "value": spo2, "unit": "%"},
                        {"code": "pulse", "value": pulse, "unit": "/min"},
                    ]
                publisher.publish_reading(d.device_id, d.seq, obs)
            await asyncio.sleep(0.02)
    finally:
        await publisher.close()
    log.info(
        "simulator sent %d messages, %d acknowledged by the broker",
        publisher.stats.sent,
        publisher.stats.acked,
    )
    return publisher.stats
