"""What one simulated device sends: sequence numbers, battery, outages and faults on request.

Pure: it turns measurements into the MQTT messages a real device would publish, each labelled
with what the pipeline must do with it (store it, store it once, or dead-letter it and why),
so a run can be reconciled against what the pipeline stored. Seeded, so a run is repeatable.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from simulators.scenario import DRAIN_PCT_PER_H, DeviceSpec, Kind
from telehealth.contracts import MAX_PAYLOAD_BYTES, Reason, wire_time
from telehealth.topics import readings_topic, status_topic

BACKLOG_BATCH = 50  # readings per message when uploading a backlog
RECHARGE_AFTER_MIN = 60.0  # a flat battery is back at 100 % this long after it died
STATUS_STEP_PCT = 5  # a status message each time the battery falls past a multiple of this


class Expect(StrEnum):
    """What the pipeline must do with a message; dead letters use the `Reason` values."""

    STORED = "stored"
    DUPLICATE = "duplicate"
    STATUS = "status"


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    expect: str
    seqs: tuple[int, ...] = ()
    retain: bool = False


@dataclass(frozen=True)
class Step:
    """The outcome of one measurement. On `reconnect` the link comes back before `messages` are
    sent; on `drop` it vanishes (the broker sends the will) after they are acknowledged."""

    messages: list[Message]
    drop: bool = False
    reconnect: bool = False


@dataclass
class Tally:
    """What the device did, for the run's report."""

    measured: int = 0
    lost_on_device: int = 0
    not_measured_flat_battery: int = 0
    duplicates_sent: int = 0
    backlog_uploaded: int = 0
    dead_letters: dict[str, int] = field(default_factory=dict)
    expected_seqs: list[int] = field(default_factory=list)


class SimulatedDevice:
    """Faults are drawn per reading from the device's own seeded generator."""

    def __init__(
        self,
        device_id: str,
        kind: Kind,
        spec: DeviceSpec,
        *,
        seed: int,
        seq_start: int,
        start_min: float,
        peer: str | None = None,
    ) -> None:
        self.device_id = device_id
        self.kind = kind
        self.faults = spec.faults
        self.drain = spec.drain_pct_per_h if spec.drain_pct_per_h is not None else DRAIN_PCT_PER_H[kind]
        self.battery = spec.battery_pct
        self.peer = peer
        self.seq_start = seq_start
        self.seq = seq_start
        self.tally = Tally()
        self._start_min = start_min
        self._last_min = start_min
        self._rng = random.Random(seed)
        self._online = True
        self._flat_since: float | None = None
        self._backlog: list[dict[str, Any]] = []
        self._held: Message | None = None
        self._reported_step = int(self.battery // STATUS_STEP_PCT)

    @property
    def online(self) -> bool:
        return self._online

    def status(self) -> Message:
        body = json.dumps({"state": "online", "battery_pct": round(self.battery)}).encode()
        return Message(status_topic(self.device_id), body, Expect.STATUS, retain=True)

    def will(self) -> Message:
        """Set as the connection's last will: the broker publishes it if the device vanishes."""
        body = json.dumps({"state": "offline"}).encode()
        return Message(status_topic(self.device_id), body, Expect.STATUS, retain=True)

    def _in_outage(self, minute: float) -> bool:
        offset = minute - self._start_min
        return any(o.at_min <= offset < o.at_min + o.for_min for o in self.faults.outages)

    def step(
        self,
        minute: float,
        observations: list[dict[str, Any]],
        at: datetime,
        context: dict[str, Any] | None = None,
    ) -> Step:
        """The device measures at simulated `minute`, wall-clock `at`, and decides what to send."""
        self.battery = max(0.0, self.battery - self.drain * (minute - self._last_min) / 60)
        self._last_min = minute
        if self._flat_since is not None:
            if minute - self._flat_since < RECHARGE_AFTER_MIN:
                self.tally.not_measured_flat_battery += 1
                return Step([])
            self._flat_since, self.battery = None, 100.0
            self._reported_step = int(100 // STATUS_STEP_PCT)
        if self.battery <= 0:
            self._flat_since = minute
            self.tally.not_measured_flat_battery += 1
            return self._go_offline()
        reading = self._measure(observations, at, context or {})
        if self._in_outage(minute):
            if reading is not None:
                self._backlog.append(reading)
            return self._go_offline()
        messages: list[Message] = []
        reconnect = not self._online
        if reconnect:
            self._online = True
            messages += [self.status(), *self._upload_backlog()]
        elif int(self.battery // STATUS_STEP_PCT) < self._reported_step:
            self._reported_step = int(self.battery // STATUS_STEP_PCT)
            messages.append(self.status())
        if reading is not None:
            messages += self._send(reading)
        return Step(messages, reconnect=reconnect)

    def finish(self) -> list[Message]:
        """What is still held back (a reordered reading) at the end of the run."""
        held, self._held = self._held, None
        return [held] if held else []

    def _go_offline(self) -> Step:
        was_online, self._online = self._online, False
        return Step(self.finish(), drop=was_online)

    def _measure(
        self, observations: list[dict[str, Any]], at: datetime, context: dict[str, Any]
    ) -> dict[str, Any] | None:
        self.seq += 1
        self.tally.measured += 1
        if self._rng.random() < self.faults.dropout:
            self.tally.lost_on_device += 1
            return None
        return {
            "device_id": self.device_id,
            "seq": self.seq,
            "measured_at": wire_time(at + timedelta(seconds=self.faults.clock_skew_s)),
            "observations": observations,
            "battery_pct": round(self.battery),
            **({"context": context} if context else {}),
        }

    def _dead(self, reason: Reason, payload: bytes, seq: int) -> Message:
        self.tally.dead_letters[reason.value] = self.tally.dead_letters.get(reason.value, 0) + 1
        return Message(readings_topic(self.device_id), payload, reason.value, (seq,))

    def _corrupted(self, reading: dict[str, Any], payload: bytes, roll: float) -> Message | None:
        """The malformed, oversized or forged form of the reading that `roll` picks, if any."""
        f, seq = self.faults, reading["seq"]
        if roll < f.malformed:
            return self._dead(Reason.UNPARSEABLE, payload[: len(payload) // 2], seq)
        roll -= f.malformed
        if roll < f.oversized:
            return self._dead(Reason.OVERSIZED, payload[:-1] + b" " * MAX_PAYLOAD_BYTES + b"}", seq)
        roll -= f.oversized
        if roll < f.impersonate and self.peer:
            forged = json.dumps(reading | {"device_id": self.peer}).encode()
            return self._dead(Reason.DEVICE_MISMATCH, forged, seq)
        return None

    def _send(self, reading: dict[str, Any]) -> list[Message]:
        payload, seq = json.dumps(reading).encode(), reading["seq"]
        if (dead := self._corrupted(reading, payload, self._rng.random())) is not None:
            return [dead, *self.finish()]
        self.tally.expected_seqs.append(seq)
        message = Message(readings_topic(self.device_id), payload, Expect.STORED, (seq,))
        out = [message]
        if self._rng.random() < self.faults.duplicate:
            self.tally.duplicates_sent += 1
            out.append(Message(message.topic, payload, Expect.DUPLICATE, (seq,)))
        if self._held is None and self._rng.random() < self.faults.reorder:
            self._held = message
            return out[1:]
        return out + self.finish()

    def _upload_backlog(self) -> list[Message]:
        backlog, self._backlog = self._backlog, []
        out = []
        for i in range(0, len(backlog), BACKLOG_BATCH):
            batch = backlog[i : i + BACKLOG_BATCH]
            seqs = tuple(r["seq"] for r in batch)
            self.tally.expected_seqs.extend(seqs)
            self.tally.backlog_uploaded += len(batch)
            out.append(
                Message(readings_topic(self.device_id), json.dumps(batch).encode(), Expect.STORED, seqs)
            )
        return out
