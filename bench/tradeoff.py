"""The trade-off curve of `telehealth bench --clinical --clinical-curve`: the engine at each
predicted-low setting beside AR2, as a table and a plot (`docs/alerts-tradeoff.png`)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from bench.clinical import COHORTS, Cohort, Score, evaluate
from processor.alerts.engine import ThresholdEngine
from processor.alerts.rules import rules_for
from telehealth.thresholds import Thresholds

#: the settings the trade-off curve sweeps: (predicted-low line, horizon in minutes, readings
#: in a row the forecast must be low)
CURVE = ((3.9, 10, 2), (3.9, 15, 2), (3.9, 20, 2), (3.9, 20, 1), (3.9, 25, 2), (3.9, 30, 2), (3.0, 25, 2))


@dataclass(frozen=True)
class Point:
    label: str
    false_per_day: float
    warned_share: float
    median_lead: float | None


def curve(prepared: Cohort, settings: tuple[tuple[float, int, int], ...] = CURVE) -> list[Point]:
    """The engine at each predicted-low setting, and AR2: what each costs in false alerts per
    patient-day against how many level 1 episodes it warns of before onset."""
    points = []
    ar2_score: Score | None = None
    for line, horizon, readings in settings:
        rules = rules_for(
            Thresholds(
                glucose_predicted_low=line,
                glucose_predicted_minutes=horizon,
                glucose_predicted_readings=readings,
            )
        )
        result = evaluate(prepared, functools.partial(ThresholdEngine, rules), with_ar2=ar2_score is None)
        if ar2_score is None:
            ar2_score = result.scores[1]
        e = result.scores[0]
        points.append(
            Point(
                f"{line:.1f} in {horizon} min" + (", 1 reading" if readings == 1 else ""),
                e.false_alerts / e.patient_days,
                e.warned_before_share,
                e.l1_median_lead,
            )
        )
    assert ar2_score is not None
    points.append(
        Point(
            "AR2",
            ar2_score.false_alerts / ar2_score.patient_days,
            ar2_score.warned_before_share,
            ar2_score.l1_median_lead,
        )
    )
    return points


def curve_table(name: str, points: list[Point]) -> str:
    lines = [
        f"trade-off, {COHORTS.get(name, name)}: predicted low below <line> within <horizon>"
        " (on 2 readings in a row unless marked)",
        "| setting | false alerts per patient-day | level 1 warned before onset | median lead |",
        "|---|---|---|---|",
    ]
    for p in points:
        lead = f"{p.median_lead:+.0f} min" if p.median_lead is not None else "n/a"
        lines.append(f"| {p.label} | {p.false_per_day:.2f} | {100 * p.warned_share:.1f} % | {lead} |")
    return "\n".join(lines)


def plot(curves: dict[str, list[Point]], path: Path) -> Path:
    """Warned before onset against false alerts per patient-day, a line per cohort."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, points in curves.items():
        engine = sorted((p for p in points if p.label != "AR2"), key=lambda p: p.false_per_day)
        line = ax.plot(
            [p.false_per_day for p in engine],
            [100 * p.warned_share for p in engine],
            "o-",
            label=f"engine, {name}",
        )[0]
        for p in engine:
            ax.annotate(
                p.label,
                (p.false_per_day, 100 * p.warned_share),
                fontsize=7,
                xytext=(3, -9),
                textcoords="offset points",
            )
        ar2_point = next(p for p in points if p.label == "AR2")
        ax.plot(
            ar2_point.false_per_day,
            100 * ar2_point.warned_share,
            "s",
            color=line.get_color(),
            markersize=9,
            label=f"Nightscout AR2, {name}",
        )
    ax.axhline(95, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("false low alerts per patient-day")
    ax.set_ylabel("level 1 episodes warned before onset (%)")
    ax.set_title("Low-glucose alarms: warning against false alerts")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
