"""One process driving a fleet of simulated devices, from a handful to ten thousand.

Each device has its own MQTT connection with its provisioned credentials and last will
(`connections=None`), or devices share a few connections as a hub would (`connections=K`;
a hub reports a vanished device's `offline` itself). Devices measure on their scenario's
schedule at `speed` times real time, or, with `rate`, all at one interval that makes the
fleet's total readings per second. The `Report` says what was sent and what the pipeline
must therefore have stored and dead-lettered.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from simulators.cohort import SimPatient
from simulators.device import SimulatedDevice
from simulators.link import Link
from simulators.report import Report
from simulators.scenario import HISTORY_MIN, START_MIN, Cohort, Kind, Scenario
from telehealth.mqtt import MqttAddress

log = logging.getLogger(__name__)
CONNECT_CONCURRENCY = 100


@dataclass
class _Member:
    device: SimulatedDevice
    patient: int
    kind: Kind
    phase: float  # fraction of the interval this device is shifted by, to spread the load
    link: Link


class Fleet:
    def __init__(
        self,
        patients: list[SimPatient],
        scenario: Scenario,
        address: MqttAddress,
        *,
        seed: int = 1,
        connections: int | None = None,
        seq_start: int | None = None,
    ) -> None:
        self.cohort = Cohort(scenario, len(patients), seed)
        self.scenario = scenario
        self.address = address
        self.per_device = connections is None
        seq_start = seq_start if seq_start is not None else int(time.time() * 1000)
        every = [(p, kind, d) for p in patients for kind, d in p.devices.items()]
        hubs = [
            Link(
                self.address,
                client_id=f"sim-hub-{i}",
                username=self.address.username or f"sim-hub-{i}",
                password=self.address.password,
            )
            for i in range(connections or 0)
        ]
        self.members: list[_Member] = []
        for n, (p, kind, provisioned) in enumerate(every):
            spec = self.cohort.specs[p.index].device(kind)
            peer = every[(n + 1) % len(every)][2].device_id if len(every) > 1 else None
            device = SimulatedDevice(
                provisioned.device_id,
                kind,
                spec,
                seed=seed * 7_919 + n,
                seq_start=seq_start,
                start_min=START_MIN,
                peer=peer,
            )
            if self.per_device:
                link = Link(
                    self.address,
                    client_id=provisioned.device_id,
                    username=provisioned.device_id,
                    password=provisioned.password,
                    will=device.will(),
                )
            else:
                link = hubs[n % len(hubs)]
            self.members.append(_Member(device, p.index, kind, (n * 0.618_034) % 1.0, link))
        self.links = [m.link for m in self.members] if self.per_device else hubs

    async def _connect_all(self) -> None:
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def one(link: Link) -> None:
            async with gate:
                await link.connect()

        await asyncio.gather(*(one(link) for link in self.links))
        for m in self.members:
            await m.link.publish(m.device.status())

    def _shift(self, m: _Member) -> float:
        """Minutes an interval device is shifted by; daily checks keep their clock times."""
        interval = self.cohort.interval(m.patient, m.kind)
        return 0.0 if interval is None else m.phase * interval

    def _next(self, m: _Member, minute: float, speed: float, period_s: float | None) -> float:
        """The next simulated minute at which the member measures, after `minute`."""
        if period_s is not None:
            return minute + period_s * speed / 60
        shift = self._shift(m)
        return self.cohort.next_due(m.patient, m.kind, minute - shift + 1e-6) + shift

    async def run(
        self,
        *,
        speed: float = 1.0,
        rate: float | None = None,
        duration_s: float | None = None,
        stop: asyncio.Event | None = None,
    ) -> Report:
        """Drive until `duration_s` real seconds pass or `stop` is set; then flush and report."""
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        report = Report(
            started_at=datetime.now(UTC),
            scenario=self.scenario.name,
            devices=len(self.members),
            connections=len(self.links),
        )
        connecting = loop.time()
        await self._connect_all()
        began = loop.time()
        report.connect_s = began - connecting
        period_s = len(self.members) / rate if rate else None
        start = START_MIN + self.scenario.start_min
        if period_s is not None:
            minute_of = [start + m.phase * period_s * speed / 60 for m in self.members]
        else:
            history = min(HISTORY_MIN, self.scenario.start_min)
            if history > 0:
                await self._history(start - history, start, speed)
            minute_of = [self._next(m, start - 1e-9, speed, None) for m in self.members]
        queue = [((minute - start) * 60 / speed, i) for i, minute in enumerate(minute_of)]
        heapq.heapify(queue)
        try:
            while queue and not stop.is_set():
                offset, i = queue[0]
                if duration_s is not None and offset >= duration_s:
                    break
                wait = began + offset - loop.time()
                if wait > 0:
                    await _sleep_or_stop(stop, min(wait, 0.05))
                    continue
                heapq.heappop(queue)
                m = self.members[i]
                await self._measure(m, minute_of[i])
                minute_of[i] = self._next(m, minute_of[i], speed, period_s)
                heapq.heappush(queue, ((minute_of[i] - start) * 60 / speed, i))
        finally:
            for m in self.members:
                for message in m.device.finish():
                    await m.link.publish(message)
            await asyncio.gather(*(link.close() for link in self.links))
        report.elapsed_s = loop.time() - began
        report.add(m.device for m in self.members)
        report.messages_sent = sum(link.sent for link in self.links)
        report.messages_acked = sum(link.acked for link in self.links)
        report.publish_failures = sum(link.failed for link in self.links)
        return report

    async def _history(self, since: float, until: float, speed: float) -> None:
        """What each interval device measured in (since, until), sent with the times it was
        measured: the recent past a device uploads when it first connects."""
        now = datetime.now(UTC)
        for m in self.members:
            if self.cohort.interval(m.patient, m.kind) is None:
                continue  # spot checks and finger-pricks keep their clock times
            minute = self._next(m, since, speed, None)
            while minute < until:
                await self._measure(m, minute, now - timedelta(seconds=(until - minute) * 60 / speed))
                minute = self._next(m, minute, speed, None)

    async def _measure(self, m: _Member, minute: float, at: datetime | None = None) -> None:
        sample = self.cohort.sample(m.patient, m.kind, minute)
        step = m.device.step(minute, sample.observations, at or datetime.now(UTC), sample.context)
        if step.reconnect and self.per_device:
            await m.link.connect()
        for message in step.messages:
            await m.link.publish(message)
        if step.drop:
            if self.per_device:
                await m.link.drop()
            else:
                await m.link.publish(m.device.will())


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
