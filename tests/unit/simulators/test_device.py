"""The simulated device's labels are what the real gateway checks decide for its messages."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from uuid import uuid4

from simulators.device import Expect, Message, SimulatedDevice, Step
from simulators.scenario import DeviceSpec, Faults, Outage
from telehealth.checks import check_readings, check_status
from telehealth.contracts import MAX_PAYLOAD_BYTES, StatusEvent
from telehealth.storage.devices import DeviceEntry

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
OBS = [{"code": "glucose", "value": 6.1, "unit": "mmol/L", "source": "cgm"}]
REGISTRY = {d: DeviceEntry(d, uuid4(), "cgm", revoked=False) for d in ("cgm-a", "cgm-b")}


def device(faults: Faults | None = None, **spec: float) -> SimulatedDevice:
    return SimulatedDevice(
        "cgm-a",
        "cgm",
        DeviceSpec(faults=faults or Faults(), **spec),  # type: ignore[arg-type]
        seed=5,
        seq_start=1000,
        start_min=0,
        peer="cgm-b",
    )


def run(d: SimulatedDevice, minutes: int) -> list[Step]:
    steps = [d.step(m, OBS, T0 + timedelta(minutes=m)) for m in range(minutes)]
    steps.append(Step(d.finish()))
    return steps


def judged(messages: list[Message]) -> tuple[list[int], dict[str, int]]:
    """Seqs the gateway accepts (in arrival order) and its dead letters by reason."""
    accepted, letters = [], {}
    for m in messages:
        if m.expect == Expect.STATUS:
            assert isinstance(check_status(m.topic, m.payload, T0, REGISTRY.get), StatusEvent)
            continue
        verdict = check_readings(m.topic, m.payload, T0, REGISTRY.get)
        accepted += [r.seq for r in verdict.accepted]
        for letter in verdict.rejected:
            letters[letter.reason.value] = letters.get(letter.reason.value, 0) + 1
            assert m.expect == letter.reason.value, (m.expect, letter.detail)
        if m.expect in (Expect.STORED, Expect.DUPLICATE):
            assert [r.seq for r in verdict.accepted] == list(m.seqs)
    return accepted, letters


def test_a_healthy_device_sends_every_reading_once_in_order() -> None:
    d = device()
    messages = [m for s in run(d, 30) for m in s.messages]
    accepted, letters = judged(messages)
    assert accepted == list(range(1001, 1031)) == d.tally.expected_seqs
    assert letters == {} and d.tally.lost_on_device == 0


def test_faults_are_labelled_as_the_gateway_judges_them() -> None:
    faults = Faults(dropout=0.1, duplicate=0.2, reorder=0.2, malformed=0.1, oversized=0.05, impersonate=0.1)
    d = device(faults)
    messages = [m for s in run(d, 400) for m in s.messages]
    accepted, letters = judged(messages)
    assert sorted(set(accepted)) == sorted(d.tally.expected_seqs)
    assert letters == d.tally.dead_letters
    assert set(letters) == {"unparseable", "oversized", "device_mismatch"}
    assert len(accepted) - len(set(accepted)) == d.tally.duplicates_sent > 0
    assert accepted != sorted(accepted), "some readings arrive out of order"
    measured = d.tally.measured
    assert measured == 400 == len(set(accepted)) + sum(letters.values()) + d.tally.lost_on_device
    oversized = [m for m in messages if m.expect == "oversized"]
    assert all(len(m.payload) > MAX_PAYLOAD_BYTES for m in oversized)


def test_an_outage_drops_the_link_then_uploads_the_backlog_with_original_times() -> None:
    d = device(Faults(outages=[Outage(at_min=10, for_min=5)]))
    steps = run(d, 30)
    assert [i for i, s in enumerate(steps) if s.drop] == [10]
    assert [i for i, s in enumerate(steps) if s.reconnect] == [15]
    assert all(not s.messages for s in steps[10:15])
    status, backlog, live = steps[15].messages
    assert json.loads(status.payload)["state"] == "online" and status.retain
    uploaded = json.loads(backlog.payload)
    assert [r["seq"] for r in uploaded] == [1011, 1012, 1013, 1014, 1015]
    assert uploaded[0]["measured_at"] == "2026-11-23T08:10:00Z"
    assert json.loads(live.payload)["seq"] == 1016
    assert judged([m for s in steps for m in s.messages])[0] == list(range(1001, 1031))
    assert json.loads(d.will().payload) == {"state": "offline"}


def test_battery_drains_reports_steps_goes_flat_and_recharges() -> None:
    d = device(battery_pct=12, drain_pct_per_h=60)
    steps = run(d, 120)
    statuses = [
        json.loads(m.payload)["battery_pct"] for s in steps for m in s.messages if m.expect == "status"
    ]
    assert statuses[:2] == [9, 4], "a status each time it falls past a multiple of 5 %"
    flat = [i for i, s in enumerate(steps) if s.drop]
    assert flat == [12], "flat at 12 % / 60 % per hour = 12 minutes"
    back = [i for i, s in enumerate(steps) if s.reconnect]
    assert back == [72] and json.loads(steps[72].messages[0].payload) == {
        "state": "online",
        "battery_pct": 100,
    }
    assert d.tally.not_measured_flat_battery == 60


def test_clock_skew_shifts_measured_at() -> None:
    d = device(Faults(clock_skew_s=-900))
    [message] = d.step(0, OBS, T0).messages
    assert json.loads(message.payload)["measured_at"] == "2026-11-23T07:45:00Z"


def test_a_seeded_device_is_reproducible() -> None:
    faults = Faults(dropout=0.2, duplicate=0.2, reorder=0.2, malformed=0.1)
    first = [m.payload for s in run(device(faults), 100) for m in s.messages]
    again = [m.payload for s in run(device(faults), 100) for m in s.messages]
    assert first == again
