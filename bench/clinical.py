"""`telehealth bench --clinical`: the low-glucose alarms of this engine and of Nightscout's AR2
on seeded cohorts, scored against the consensus definitions of hypoglycaemia.

Two cohorts, both seen by a noisy, lagging CGM every 5 minutes, every reading live, in order:
- `own`: the project's simulator (`simulators.physiology`: type 1 patients and every fifth
  type 2, meals, insulin mismatch, exercise, random insulin overdoses). The alarm settings
  were chosen on this one.
- `uva`: the UVA/Padova type 1 model through `simglucose` (`bench.uva_padova`), a physiology
  written by others; held out, never used to choose anything.

Episodes (on the CGM trace, the international consensus on CGM outcomes): level 1 starts with
15 min or more below 3.9 mmol/L, level 2 with 15 min or more below 3.0; either ends with 15 min
or more at or above 3.9. A reading stands for the 5 minutes it samples (3 readings = 15 min).

Scores (a notification is an alert that reaches the clinician: opened, upgraded or
re-notified; AR2: its low alarm starting, or turning urgent):
- alerts per patient-day: notifications on the low side;
- false: a notification with no level 1 episode under way or starting within 30 min (false
  urgent: the same for urgent notifications);
- level 1 warned before onset: episodes whose own first notification (after the previous
  episode's end, at most 60 min back) came before their first reading below 3.9; an alert
  still showing from an earlier dip does not count, it was not news of this one;
- level 1 lead: that first notification relative to the first reading below 3.9 (positive =
  before), over the episodes notified at all;
- level 2 urgent lead: the first urgent notification relative to the first reading below 3.0,
  looking back over the whole level 1 episode the level 2 one deepens from (and 60 min before
  it): an urgent alert raised as this low began is news of it, however long before it reached
  3.0; one from an earlier episode is not. Episodes with none are counted as missed.
"""

from __future__ import annotations

import itertools
import random
import statistics
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid5

from processor.alerts import ar2
from processor.alerts.engine import Act, ThresholdEngine
from processor.alerts.glucose import RULE, EpisodeView, Stage
from processor.alerts.rules import Severity
from processor.alerts.trend import TrendTracker
from processor.normalise import NormalisedObservation
from simulators.physiology import DAY, T1, T2, CgmSensor, Glucose, GlucoseEvent

T0 = datetime(2026, 1, 1, tzinfo=UTC)
STEP_MIN = 5
FALSE_WITHIN_MIN = 30
LOOK_BACK_MIN = 60
URGENT_LEAD_MIN = 10
NS = UUID(int=11)


@dataclass(frozen=True)
class Episode:
    start: float  # minute of the first reading below the line
    end: float  # minute of the first reading of the 15 min back at or above 3.9 (or trace end)


@dataclass
class Alarms:
    """What one alarm did on one trace: notifications (minute) and urgent ones."""

    alerts: list[float] = field(default_factory=list)
    urgent: list[float] = field(default_factory=list)
    #: (from, to) minutes an alert was showing (opened and not yet resolved)
    spans: list[tuple[float, float]] = field(default_factory=list)

    def first_in(self, after: float, until: float, urgent: bool = False) -> float | None:
        """The first notification in (after, until]."""
        times = (t for t in (self.urgent if urgent else self.alerts) if after < t <= until)
        return min(times, default=None)


@dataclass
class Score:
    name: str
    patient_days: float = 0.0
    alerts: int = 0
    false_alerts: int = 0
    false_urgent: int = 0
    l1_episodes: int = 0
    l1_before: int = 0
    l1_leads: list[float] = field(default_factory=list)
    l2_leads: list[float] = field(default_factory=list)
    l2_missed: int = 0
    longest_open: float = 0.0

    @property
    def warned_before_share(self) -> float:
        return self.l1_before / self.l1_episodes if self.l1_episodes else 0.0

    @property
    def false_share(self) -> float:
        return self.false_alerts / self.alerts if self.alerts else 0.0

    @property
    def alerts_per_day(self) -> float:
        return self.alerts / self.patient_days if self.patient_days else 0.0

    @property
    def l1_median_lead(self) -> float | None:
        return statistics.median(self.l1_leads) if self.l1_leads else None

    def row(self) -> dict[str, str]:
        def median(xs: list[float]) -> str:
            return f"{statistics.median(xs):+.0f} min" if xs else "n/a"

        l2 = len(self.l2_leads) + self.l2_missed
        early = sum(1 for lead in self.l2_leads if lead >= URGENT_LEAD_MIN)
        return {
            "low-side alerts per patient-day": f"{self.alerts_per_day:.2f}",
            "false low alerts (no episode within 30 min)": f"{100 * self.false_share:.0f} %",
            "false low alerts per patient-day": f"{self.false_alerts / self.patient_days:.2f}",
            "false urgent low alerts per patient-day": f"{self.false_urgent / self.patient_days:.2f}",
            "level 1 warned before onset": f"{100 * self.warned_before_share:.0f} %"
            f" ({self.l1_before} of {self.l1_episodes})",
            "level 1 median lead before the first reading < 3.9": median(self.l1_leads),
            "level 2: urgent relative to the first reading < 3.0": median(self.l2_leads),
            f"level 2: urgent >= {URGENT_LEAD_MIN} min before onset": f"{early} of {l2}",
            "level 2 episodes that got no new urgent alert": f"{self.l2_missed} of {l2}",
            "longest a low alert stayed open": f"{self.longest_open / 60:.1f} h",
        }


def trace(patient: int, days: int, seed: int) -> list[tuple[float, float]]:
    """(minute, mmol/L) CGM readings every 5 minutes for one simulated patient."""
    rng = random.Random(seed * 1_000_003 + patient)
    profile = T2 if patient % 5 == 4 else T1
    events = tuple(
        GlucoseEvent(kind="overdose", at_min=d * DAY + rng.uniform(0, DAY), size=rng.uniform(3.0, 8.0))
        for d in range(days)
        for _ in range(rng.choice((0, 1, 1, 2)))
    )
    sensor = CgmSensor(Glucose(profile, seed * 7 + patient, events), seed * 13 + patient)
    return [(float(m), sensor.read(m)) for m in range(0, days * DAY, STEP_MIN)]


def episodes(readings: list[tuple[float, float]], below: float, end_at: float = 3.9) -> list[Episode]:
    """Consensus episodes: >= 15 min below `below`, ended by >= 15 min at or above `end_at`."""
    need = 15 // STEP_MIN
    found: list[Episode] = []
    start: float | None = None
    run_below: list[float] = []
    run_above: list[float] = []
    for minute, value in readings:
        if start is None:
            run_below = [*run_below, minute] if value < below else []
            if len(run_below) >= need:
                start, run_above = run_below[0], []
        else:
            run_above = [*run_above, minute] if value >= end_at else []
            if len(run_above) >= need:
                found.append(Episode(start, run_above[0]))
                start, run_below = None, []
    if start is not None:
        found.append(Episode(start, readings[-1][0]))
    return found


#: one trace's readings as the engine sees them: (minute, the reading and its derived trend)
Steps = list[tuple[float, list[NormalisedObservation]]]


def steps(readings: list[tuple[float, float]], patient: UUID) -> Steps:
    """Each reading with the trend the processor derives for it (the costly part, computed once
    and shared by every setting the engine is run with)."""
    trends = TrendTracker()
    out: Steps = []
    for seq, (minute, value) in enumerate(readings):
        at = T0 + timedelta(minutes=minute)
        obs = [
            NormalisedObservation(
                patient, "cgm", seq, at, at, "glucose", value, "mmol/L", "105272-9", "cgm", ()
            )
        ]
        out.append((minute, obs + trends.derive(obs)))
    return out


def run_engine(readings: Steps, engine: ThresholdEngine | None = None) -> Alarms:
    """The processor's threshold engine over a trace, every reading live, the database simulated."""
    engine = engine or ThresholdEngine()
    open_now: dict[tuple[UUID, str], Severity] = {}
    views: dict[UUID, EpisodeView] = {}
    alarms = Alarms()
    opened: float | None = None
    for minute, obs in readings:
        at = T0 + timedelta(minutes=minute)
        for action in engine.evaluate(obs, open_now, None, views):
            key = (action.patient_id, action.rule)
            if action.act is Act.RESOLVE:
                open_now.pop(key, None)
                if action.rule == RULE:
                    views.pop(action.patient_id, None)
                    if opened is not None:
                        alarms.spans.append((opened, minute))
                    opened = None
                continue
            open_now[key] = action.severity
            if action.rule != RULE:
                continue
            views[action.patient_id] = EpisodeView(Stage.of(action.severity, action.code), False, at)
            alarms.alerts.append(minute)  # opened, upgraded or re-notified: each reaches the screen
            opened = minute if opened is None else opened
            if action.severity is Severity.URGENT:
                alarms.urgent.append(minute)
    if opened is not None and readings:
        alarms.spans.append((opened, readings[-1][0]))
    return alarms


def run_ar2(readings: list[tuple[float, float]], target_bottom_mgdl: float = 70) -> Alarms:
    """AR2 on the same readings: a notification each time its low alarm starts or turns urgent."""
    alarms = Alarms()
    low = urgent = False
    started = 0.0
    for prev, current in itertools.pairwise(readings):
        alarm = ar2.check(prev, current, target_bottom_mgdl)
        now_low = alarm.event == "low"
        now_urgent = now_low and alarm.level == "urgent"
        if now_low and not low:
            alarms.alerts.append(current[0])
            started = current[0]
        elif now_urgent and not urgent:
            alarms.alerts.append(current[0])
        if low and not now_low:
            alarms.spans.append((started, current[0]))
        if now_urgent and not urgent:
            alarms.urgent.append(current[0])
        low, urgent = now_low, now_urgent
    return alarms


def score(score: Score, alarms: Alarms, l1: list[Episode], l2: list[Episode]) -> None:
    score.alerts += len(alarms.alerts)
    score.longest_open = max([score.longest_open, *(b - a for a, b in alarms.spans)])
    for t in alarms.alerts:
        if not any(e.start - FALSE_WITHIN_MIN <= t <= e.end for e in l1):
            score.false_alerts += 1
    for t in alarms.urgent:
        if not any(e.start - FALSE_WITHIN_MIN <= t <= e.end for e in l1):
            score.false_urgent += 1
    previous_end = float("-inf")
    for e in l1:
        score.l1_episodes += 1
        first = alarms.first_in(max(previous_end, e.start - LOOK_BACK_MIN), e.end)
        if first is not None:
            score.l1_leads.append(e.start - first)
            score.l1_before += first < e.start
        previous_end = e.end
    previous_end = float("-inf")
    for e in l2:
        # The level 1 episode it deepens from (the two end on the same reading).
        around = next((o for o in l1 if o.start <= e.start <= o.end), e)
        first = alarms.first_in(max(previous_end, around.start - LOOK_BACK_MIN), e.end, urgent=True)
        if first is None:
            score.l2_missed += 1
        else:
            score.l2_leads.append(e.start - first)
        previous_end = e.end


Trace = tuple[UUID, list[tuple[float, float]]]
COHORTS = {"own": "the project's simulator", "uva": "UVA/Padova virtual patients (simglucose), held out"}


@dataclass
class Result:
    cohort: str
    patients: int
    days: int
    l1_episodes: int
    l2_episodes: int
    longest_episode_min: float
    scores: list[Score]

    def report(self) -> str:
        rows = [s.row() for s in self.scores]
        names = list(rows[0])
        width = max(len(n) for n in names)
        cols = [max(len(s.name), *(len(r[n]) for n in names)) for s, r in zip(self.scores, rows, strict=True)]
        lines = [
            f"clinical, {COHORTS.get(self.cohort, self.cohort)}: {self.patients} patients x {self.days} days,"
            f" CGM every {STEP_MIN} min; {self.l1_episodes} level 1 and {self.l2_episodes} level 2 episodes"
            f" (consensus definitions), the longest {self.longest_episode_min / 60:.1f} h",
            "| "
            + " " * width
            + " | "
            + " | ".join(s.name.ljust(c) for s, c in zip(self.scores, cols, strict=True))
            + " |",
            "|" + "-" * (width + 2) + "|" + "|".join("-" * (c + 2) for c in cols) + "|",
        ]
        for n in names:
            lines.append(
                "| "
                + n.ljust(width)
                + " | "
                + " | ".join(r[n].ljust(c) for r, c in zip(rows, cols, strict=True))
                + " |"
            )
        return "\n".join(lines)


def patients(count: int, days: int, seed: int) -> Iterator[Trace]:
    for p in range(count):
        yield uuid5(NS, f"{seed}:{p}"), trace(p, days, seed)


def cohort(name: str, count: int, days: int, seed: int) -> list[Trace]:
    """The traces of one cohort (`own` or `uva`)."""
    if name == "uva":
        try:
            from bench import uva_padova
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise SystemExit("the uva cohort needs simglucose: pip install -e '.[clinical]'") from exc
        return list(uva_padova.patients(count, days, seed))
    if name != "own":
        raise ValueError(f"unknown cohort {name!r}; known: {', '.join(COHORTS)}")
    return list(patients(count, days, seed))


@dataclass(frozen=True)
class Cohort:
    """A cohort's traces, ready for any number of engine settings."""

    name: str
    days: int
    traces: list[tuple[UUID, list[tuple[float, float]], Steps]]


def prepare(name: str, traces: list[Trace], days: int) -> Cohort:
    return Cohort(name, days, [(patient, readings, steps(readings, patient)) for patient, readings in traces])


def evaluate(
    prepared: Cohort,
    make_engine: Callable[[], ThresholdEngine] = ThresholdEngine,
    with_ar2: bool = True,
) -> Result:
    """Both alarms (or the engine alone) over the cohort, scored."""
    engine = Score("this engine")
    nightscout = Score("Nightscout AR2")
    n1 = n2 = 0
    longest = 0.0
    for _, readings, trace_steps in prepared.traces:
        l1, l2 = episodes(readings, 3.9), episodes(readings, 3.0)
        n1, n2 = n1 + len(l1), n2 + len(l2)
        longest = max([longest, *(e.end - e.start for e in l1)])
        runs = [(engine, run_engine(trace_steps, make_engine()))]
        if with_ar2:
            runs.append((nightscout, run_ar2(readings)))
        for s, alarms in runs:
            s.patient_days += prepared.days
            score(s, alarms, l1, l2)
    scores = [engine, nightscout] if with_ar2 else [engine]
    return Result(prepared.name, len(prepared.traces), prepared.days, n1, n2, longest, scores)


def run(count: int = 100, days: int = 6, seed: int = 1, name: str = "own") -> Result:
    return evaluate(prepare(name, cohort(name, count, days, seed), days))
