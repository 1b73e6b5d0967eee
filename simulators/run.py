"""`telehealth simulate`: a cohort of simulated patients publishing in (accelerated) real time.

Physiology runs `speed` times faster than the clock from 08:00 on day 0; readings carry the
real time they are sent, so the pipeline sees on-time data at `speed` times the normal rate.
Value thresholds therefore fire as in the scenario; trend rules see slopes `speed` times
steeper, and only a run at speed 1 reproduces them (the engine-level scenario test checks
them on the scenario's own clock). What each device measures comes from the scenario's
`Cohort`, the same ground truth the tests use.
"""

from __future__ import annotations

import asyncio
import logging

from simulators.cohort import SimPatient
from simulators.fleet import Fleet
from simulators.report import Report
from simulators.scenario import load
from telehealth.mqtt import MqttAddress

log = logging.getLogger(__name__)


async def simulate(
    cohort: list[SimPatient],
    address: MqttAddress,
    *,
    scenario: str = "normal",
    speed: float = 1.0,
    rate: float | None = None,
    connections: int | None = None,
    duration_s: float | None = None,
    seed: int = 1,
    stop: asyncio.Event | None = None,
) -> Report:
    """Publish until `duration_s` real seconds pass or `stop` is set; returns what was sent.

    Each device connects with its own login; with `connections`, hubs share the address's
    login (the trusted relay), as home hubs forward for several devices."""
    fleet = Fleet(cohort, load(scenario), address, seed=seed, connections=connections)
    report = await fleet.run(speed=speed, rate=rate, duration_s=duration_s, stop=stop)
    log.info("simulator: %s", report.summary())
    return report
