"""What a simulator run sent, and its reconciliation against what the pipeline stored.

The ground truth is per device: the sequence numbers that must be stored exactly once (sent
in a valid message, possibly twice, possibly out of order or in a later backlog upload) and
the dead letters each fault must have produced, by reason.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from simulators.device import SimulatedDevice
from telehealth.storage import dead_letters, readings


@dataclass
class Report:
    started_at: datetime
    scenario: str
    devices: int
    connections: int
    connect_s: float = 0.0
    elapsed_s: float = 0.0
    messages_sent: int = 0
    messages_acked: int = 0
    publish_failures: int = 0
    measured: int = 0
    lost_on_device: int = 0
    not_measured_flat_battery: int = 0
    duplicates_sent: int = 0
    backlog_uploaded: int = 0
    dead_letters: dict[str, int] = field(default_factory=dict)
    #: device id -> sequence numbers the pipeline must store exactly once
    expected: dict[str, list[int]] = field(default_factory=dict)
    #: device id -> (first, last) sequence number the device used; nothing else may be stored
    ranges: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def expected_stored(self) -> int:
        return sum(len(seqs) for seqs in self.expected.values())

    def add(self, devices: Iterable[SimulatedDevice]) -> None:
        letters: Counter[str] = Counter(self.dead_letters)
        for d in devices:
            t = d.tally
            self.measured += t.measured
            self.lost_on_device += t.lost_on_device
            self.not_measured_flat_battery += t.not_measured_flat_battery
            self.duplicates_sent += t.duplicates_sent
            self.backlog_uploaded += t.backlog_uploaded
            letters.update(t.dead_letters)
            self.expected.setdefault(d.device_id, []).extend(t.expected_seqs)
            self.ranges[d.device_id] = (d.seq_start + 1, d.seq)
        self.dead_letters = dict(letters)

    def summary(self) -> str:
        rate = self.measured / self.elapsed_s if self.elapsed_s else 0.0
        letters = ", ".join(f"{k} {v}" for k, v in sorted(self.dead_letters.items())) or "none"
        return (
            f"{self.devices} devices, {self.connections} connections (connected in {self.connect_s:.1f} s); "
            f"{self.measured} readings in {self.elapsed_s:.1f} s ({rate:,.0f}/s); "
            f"{self.messages_sent} messages sent, {self.messages_acked} acknowledged, "
            f"{self.publish_failures} failed; must be stored: {self.expected_stored}; "
            f"lost on device: {self.lost_on_device}; duplicates sent: {self.duplicates_sent}; "
            f"backlog uploaded: {self.backlog_uploaded}; dead letters expected: {letters}"
        )

    def write(self, path: Path) -> None:
        body = asdict(self) | {
            "started_at": self.started_at.isoformat(),
            "expected_stored": self.expected_stored,
        }
        path.write_text(json.dumps(body))


@dataclass
class Reconciliation:
    expected_stored: int
    stored: int
    missing: dict[str, list[int]]
    unexpected: dict[str, list[int]]
    dead_letters_expected: dict[str, int]
    dead_letters_found: dict[str, int]

    @property
    def exact(self) -> bool:
        return (
            not self.missing and not self.unexpected and self.dead_letters_found == self.dead_letters_expected
        )

    def summary(self) -> str:
        missing = sum(len(v) for v in self.missing.values())
        unexpected = sum(len(v) for v in self.unexpected.values())
        return (
            f"stored {self.stored} of {self.expected_stored} expected; missing {missing}, "
            f"unexpected {unexpected}; dead letters {self.dead_letters_found} "
            f"(expected {self.dead_letters_expected}) -> {'exact' if self.exact else 'MISMATCH'}"
        )


async def reconcile(conn: psycopg.AsyncConnection[Any], report: Report) -> Reconciliation:
    """Compare the run's ground truth with the receipts and dead letters in the database."""
    ids = list(report.expected)
    low = min((first for first, _ in report.ranges.values()), default=0)
    stored = {
        device_id: {s for s in seqs if report.ranges[device_id][0] <= s <= report.ranges[device_id][1]}
        for device_id, seqs in (await readings.received_seqs(conn, ids, low)).items()
    }
    letters = await dead_letters.count_by_reason(conn, ids, report.started_at)
    missing, unexpected, found = {}, {}, 0
    for device_id, seqs in report.expected.items():
        want, got = set(seqs), stored.get(device_id, set())
        found += len(want & got)
        if want - got:
            missing[device_id] = sorted(want - got)
        if got - want:
            unexpected[device_id] = sorted(got - want)
    return Reconciliation(
        expected_stored=report.expected_stored,
        stored=found,
        missing=missing,
        unexpected=unexpected,
        dead_letters_expected=dict(report.dead_letters),
        dead_letters_found=letters,
    )


async def reconcile_settled(
    url: str, report: Report, *, timeout_s: float = 120, quiet_s: float = 3
) -> Reconciliation:
    """Reconcile once the pipeline has caught up: exact, or unchanged for `quiet_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    last: tuple[int, dict[str, int]] | None = None
    changed = loop.time()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        while True:
            result = await reconcile(conn, report)
            now = loop.time()
            if result.exact or now > deadline:
                return result
            seen = (result.stored, result.dead_letters_found)
            if seen != last:
                last, changed = seen, now
            elif now - changed > quiet_s:
                return result
            await asyncio.sleep(0.5)
