"""The fleet phase: one simulator process driving thousands of devices, each with its own
broker login and last will, at a set total rate; then what it sent is reconciled against
the receipts stored.

Provisioning the fleet one admin command at a time does not finish at this size: Mosquitto
2.0's dynamic-security plugin rewrites its whole JSON file after every command, so the n-th
device costs O(n) and 10,000 devices (40,000 commands) timed out after minutes. An embedded
broker therefore learns the fleet the way it learns every device at start: the devices are
provisioned in the database, the broker restarts with all their logins in its first
document, and the phase waits until the gateway has subscribed again. An external broker
gets the admin commands.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence

from bench.gateway_alone import until_subscribed
from bench.rss import RssSampler
from launcher.stack import Servers
from simulators.cohort import SimPatient, ensure_cohort
from simulators.report import reconcile_settled
from simulators.run import simulate
from telehealth.broker.admin import device_logins
from telehealth.mqtt import parse_mqtt_url
from telehealth.settings import Settings


class _DatabaseOnly:
    """Device logins that reach the broker by its restart, not by admin commands."""

    async def add_devices(self, logins: Sequence[tuple[str, str]]) -> None:
        return None

    async def disable_device(self, device_id: str) -> None:
        return None


def provision(settings: Settings, servers: Servers, devices: int) -> tuple[list[SimPatient], float]:
    """The fleet's patients and devices, with broker logins; returns them and the seconds taken."""
    assert settings.database_url
    began = time.perf_counter()
    patients = (devices + 1) // 2
    if servers.mqtt is not None and servers.mqtt.secure:
        cohort = asyncio.run(
            ensure_cohort(settings.database_url, patients, logins=_DatabaseOnly(), care_team="bench")
        )
        servers.restart_broker(settings.database_url)
        asyncio.run(until_subscribed(settings, next(iter(cohort[0].devices.values())).device_id))
    else:
        cohort = asyncio.run(admin_cohort(settings, patients))
    return cohort, time.perf_counter() - began


async def admin_cohort(settings: Settings, patients: int, first: int = 0) -> list[SimPatient]:
    """The bench's patients, their device logins added through the broker's admin commands
    (fine for the few hundred the other phases use)."""
    assert settings.database_url
    async with device_logins(settings) as logins:
        return await ensure_cohort(
            settings.database_url, patients, logins=logins, care_team="bench", first=first
        )


async def fleet(
    settings: Settings,
    cohort: list[SimPatient],
    provisioned_s: float,
    rate: float,
    seconds: float,
    connections: int | None,
) -> str:
    """Drive the provisioned fleet at `rate` readings/s for `seconds` of schedule, reconciled."""
    assert settings.database_url
    sampler = RssSampler({"simulator": os.getpid()})
    sampler.start()
    try:
        report = await simulate(
            cohort,
            parse_mqtt_url(settings.mqtt_relay_url()),
            rate=rate,
            connections=connections,
            duration_s=seconds,
        )
        result = await reconcile_settled(settings.database_url, report, timeout_s=300)
    finally:
        sampler.running = False
    achieved = report.measured / report.elapsed_s
    return (
        f"fleet: {report.devices} devices provisioned in {provisioned_s:.1f} s; {report.summary()}\n"
        f"fleet: achieved {achieved:,.0f} of {rate:,.0f} readings/s target (ratio {achieved / rate:.2f});"
        f" simulator peak RSS {sampler.peak['simulator']:.0f} MiB\n"
        f"fleet reconciliation: {result.summary()}"
    )
