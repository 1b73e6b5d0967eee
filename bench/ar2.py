"""Nightscout's AR2, as the bench compares against it: the one port lives in the core
(processor.alerts.ar2), where it is also the engine's urgent-low floor."""

from processor.alerts.ar2 import (
    AR,
    BG_MAX,
    BG_MIN,
    BG_REF,
    URGENT_THRESHOLD,
    WARN_THRESHOLD,
    Ar2Alarm,
    _mgdl_5_mins_ago,
    check,
    forecast,
)

__all__ = [
    "AR",
    "BG_MAX",
    "BG_MIN",
    "BG_REF",
    "URGENT_THRESHOLD",
    "WARN_THRESHOLD",
    "Ar2Alarm",
    "_mgdl_5_mins_ago",
    "check",
    "forecast",
]
