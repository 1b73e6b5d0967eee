"""Device rules: offline, battery low, and stale data. Pure: no I/O.

Status messages drive `device_offline` and `battery_low` (opens below 15 %, clears at 20 %).
`stale_data` is found by a timer, since silence sends no message: no reading for 3x the
device's expected interval is a warning, 6x urgent (a 5-minute CGM: 15 and 30 minutes).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from processor.alerts.engine import Act, Action, Key
from processor.alerts.rules import Severity

BATTERY_LOW_BELOW = 15
BATTERY_CLEAR_AT = 20
STALE_WARNING_FACTOR = 3
STALE_URGENT_FACTOR = 6


@dataclass(frozen=True)
class DeviceReport:
    patient_id: UUID
    device_id: str
    at: datetime
    state: str | None = None
    battery_pct: int | None = None


@dataclass(frozen=True)
class Silence:
    patient_id: UUID
    device_id: str
    last_at: datetime
    expected_interval: timedelta


def _action(
    act: Act,
    report: DeviceReport | Silence,
    rule: str,
    severity: Severity,
    message: str,
    code: str,
    value: float,
    at: datetime,
) -> Action:
    return Action(act, report.patient_id, rule, severity, message, code, value, report.device_id, None, at)


def status_actions(
    reports: Iterable[DeviceReport],
    open_alerts: Mapping[Key, Severity],
    raised_by: Mapping[Key, str | None] | None = None,
) -> list[Action]:
    """`raised_by` names the device each open device alert is about: only that device's
    recovery clears it (a patient's CGM at 100 % says nothing of their flat oximeter)."""
    state = dict(open_alerts)
    owner = dict(raised_by or {})
    actions = []
    for r in sorted(reports, key=lambda r: r.at):
        offline_key, battery_key = (r.patient_id, "device_offline"), (r.patient_id, "battery_low")
        if r.state == "offline" and offline_key not in state:
            state[offline_key] = Severity.WARNING
            owner[offline_key] = r.device_id
            actions.append(
                _action(
                    Act.OPEN,
                    r,
                    "device_offline",
                    Severity.WARNING,
                    f"Device {r.device_id} went offline",
                    "device",
                    0,
                    r.at,
                )
            )
        elif r.state == "online" and offline_key in state and owner.get(offline_key) in (None, r.device_id):
            actions.append(
                _action(
                    Act.RESOLVE,
                    r,
                    "device_offline",
                    state.pop(offline_key),
                    f"Device {r.device_id} back online",
                    "device",
                    1,
                    r.at,
                )
            )
        if r.battery_pct is None:
            continue
        if r.battery_pct < BATTERY_LOW_BELOW and battery_key not in state:
            state[battery_key] = Severity.WARNING
            owner[battery_key] = r.device_id
            actions.append(
                _action(
                    Act.OPEN,
                    r,
                    "battery_low",
                    Severity.WARNING,
                    f"Battery low: {r.battery_pct} % on {r.device_id}",
                    "battery",
                    r.battery_pct,
                    r.at,
                )
            )
        elif (
            r.battery_pct >= BATTERY_CLEAR_AT
            and battery_key in state
            and owner.get(battery_key) in (None, r.device_id)
        ):
            actions.append(
                _action(
                    Act.RESOLVE,
                    r,
                    "battery_low",
                    state.pop(battery_key),
                    f"Battery at {r.battery_pct} % on {r.device_id}",
                    "battery",
                    r.battery_pct,
                    r.at,
                )
            )
    return actions


def stale_actions(
    silences: Iterable[Silence], open_alerts: Mapping[Key, Severity], now: datetime
) -> list[Action]:
    """Worst silence per patient opens, upgrades or (when every device is heard) resolves."""
    worst: dict[UUID, tuple[Severity | None, Silence]] = {}
    for s in silences:
        quiet = now - s.last_at
        severity = (
            Severity.URGENT
            if quiet >= STALE_URGENT_FACTOR * s.expected_interval
            else Severity.WARNING
            if quiet >= STALE_WARNING_FACTOR * s.expected_interval
            else None
        )
        best = worst.get(s.patient_id)
        rank = severity.rank if severity else 0
        if best is None or rank > (best[0].rank if best[0] else 0):
            worst[s.patient_id] = (severity, s)
    actions = []
    for patient_id, (severity, s) in worst.items():
        current = open_alerts.get((patient_id, "stale_data"))
        minutes = (now - s.last_at).total_seconds() / 60
        expected = s.expected_interval.total_seconds() / 60
        message = f"No data from {s.device_id} for {minutes:.0f} min (expected every {expected:g} min)"
        if severity is not None and current is None:
            actions.append(_action(Act.OPEN, s, "stale_data", severity, message, "silence_min", minutes, now))
        elif severity is Severity.URGENT and current is Severity.WARNING:
            actions.append(
                _action(Act.UPGRADE, s, "stale_data", severity, message, "silence_min", minutes, now)
            )
        elif severity is None and current is not None:
            actions.append(
                _action(
                    Act.RESOLVE,
                    s,
                    "stale_data",
                    current,
                    f"Data from {s.device_id} again",
                    "silence_min",
                    minutes,
                    now,
                )
            )
    return actions
