from datetime import UTC, datetime, timedelta
from uuid import uuid4

from processor.alerts.device import DeviceReport, Silence, stale_actions, status_actions
from processor.alerts.engine import Act
from processor.alerts.rules import Severity

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
P = uuid4()


def report(minute: int, state: str | None = None, battery: int | None = None) -> DeviceReport:
    return DeviceReport(P, "oxi-1", NOW + timedelta(minutes=minute), state, battery)


def test_offline_opens_and_online_resolves() -> None:
    actions = status_actions([report(0, "offline"), report(1, "offline"), report(5, "online")], {})
    assert [(a.act, a.rule) for a in actions] == [
        (Act.OPEN, "device_offline"),
        (Act.RESOLVE, "device_offline"),
    ]


def test_battery_low_has_hysteresis() -> None:
    levels = [30, 14, 16, 18, 14, 19, 20, 16]
    actions = status_actions([report(i, battery=b) for i, b in enumerate(levels)], {})
    assert [(a.act, a.value) for a in actions] == [(Act.OPEN, 14), (Act.RESOLVE, 20)]


def test_known_open_alerts_are_not_reopened() -> None:
    assert (
        status_actions(
            [report(0, "offline", 10)],
            {(P, "device_offline"): Severity.WARNING, (P, "battery_low"): Severity.WARNING},
        )
        == []
    )


def test_only_the_device_an_alert_is_about_clears_it() -> None:
    """A patient's CGM at 100 % or back online says nothing of their flat, silent oximeter."""
    cgm = [
        DeviceReport(P, "cgm-1", NOW + timedelta(minutes=m), state, battery)
        for m, state, battery in ((1, "online", 100), (2, None, 100))
    ]
    in_one_batch = status_actions([report(0, "offline", 5), *cgm], {})
    assert [(a.act, a.rule) for a in in_one_batch] == [
        (Act.OPEN, "device_offline"),
        (Act.OPEN, "battery_low"),
    ]
    open_now = {(P, "device_offline"): Severity.WARNING, (P, "battery_low"): Severity.WARNING}
    raised_by: dict[tuple[object, str], str | None] = {
        (P, "device_offline"): "oxi-1",
        (P, "battery_low"): "oxi-1",
    }
    assert status_actions(cgm, open_now, raised_by) == []  # type: ignore[arg-type]
    recovered = status_actions([report(3, "online", 80)], open_now, raised_by)  # type: ignore[arg-type]
    assert [(a.act, a.rule) for a in recovered] == [
        (Act.RESOLVE, "device_offline"),
        (Act.RESOLVE, "battery_low"),
    ]


def cgm_silence(minutes: float, patient=P, device="cgm-1") -> Silence:  # type: ignore[no-untyped-def]
    return Silence(patient, device, NOW - timedelta(minutes=minutes), timedelta(minutes=5))


def test_cgm_stale_after_15_min_warning_and_30_min_urgent() -> None:
    assert stale_actions([cgm_silence(14)], {}, NOW) == []
    [warn] = stale_actions([cgm_silence(15)], {}, NOW)
    assert (warn.act, warn.severity) == (Act.OPEN, Severity.WARNING) and "15 min" in warn.message
    [esc] = stale_actions([cgm_silence(31)], {(P, "stale_data"): Severity.WARNING}, NOW)
    assert (esc.act, esc.severity) == (Act.UPGRADE, Severity.URGENT)
    [urgent] = stale_actions([cgm_silence(31)], {}, NOW)
    assert (urgent.act, urgent.severity) == (Act.OPEN, Severity.URGENT)


def test_stale_resolves_only_when_every_device_is_heard() -> None:
    open_now = {(P, "stale_data"): Severity.WARNING}
    mixed = [cgm_silence(1), cgm_silence(20, device="oxi-1")]
    assert [a.act for a in stale_actions(mixed, open_now, NOW)] == []
    [resolved] = stale_actions([cgm_silence(1), cgm_silence(2, device="oxi-1")], open_now, NOW)
    assert resolved.act is Act.RESOLVE


def test_glucometer_expected_every_six_hours_is_not_stale_after_an_hour() -> None:
    silence = Silence(P, "bgm-1", NOW - timedelta(hours=1), timedelta(hours=6))
    assert stale_actions([silence], {}, NOW) == []
