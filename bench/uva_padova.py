"""A held-out cohort for `telehealth bench --clinical`: the UVA/Padova type 1 model (`simglucose`).

The project's own simulator (`simulators.physiology`) is where the alarm settings were chosen;
these virtual patients are where they are checked. The UVA/Padova model (Dalla Man et al.,
2007 and 2014; accepted by the FDA as a substitute for animal trials of insulin dosing) is a
different physiology written by others: glucose-insulin kinetics as differential equations
for 30 virtual patients (10 children, 10 adolescents, 10 adults), seen through its CGM model
(Johnson-distributed, autocorrelated sensor error, a reading every 5 minutes).

Each simulated day: simglucose's random meals (breakfast, lunch, dinner and snacks), a
basal-bolus therapy from the patient's own carbohydrate ratio and correction factor (the
model's `Quest` table), and the errors of real self-management that cause lows and highs:
carbohydrate counting off by up to 25 % either way, now and then (1 meal in 20) a bolus for a
meal that is then half eaten, and a basal rate between 85 % and 105 % of what holds the
patient steady. Deterministic under a seed.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from types import SimpleNamespace
from typing import Any
from uuid import UUID, uuid5

from telehealth.codes import MG_DL_PER_MMOL_L

DAY = 24 * 60
STEP_MIN = 5
NS = UUID(int=12)
GROUPS = ("adolescent", "adult", "child")
#: glucose target of the correction bolus (mg/dL) and the level above which one is given
TARGET_MGDL = 140.0
CORRECT_ABOVE_MGDL = 150.0


def _quiet_import() -> tuple[Any, Any, Any, Any]:
    """simglucose imports pkg_resources (deprecated) and matplotlib; their warnings are not ours."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pandas as pd
        from simglucose.patient.t1dpatient import Action, T1DPatient
        from simglucose.sensor.cgm import CGMSensor
        from simglucose.simulation.scenario_gen import RandomScenario
    return pd, Action, T1DPatient, (CGMSensor, RandomScenario)


def name(index: int) -> str:
    """The virtual patient behind cohort member `index` (30 distinct ones, then round again)."""
    group = GROUPS[index % 3]
    return f"{group}#{(index // 3) % 10 + 1:03d}"


def trace(index: int, days: int, seed: int) -> list[tuple[float, float]]:
    """(minute, mmol/L) CGM readings every 5 minutes for one virtual patient, as a CGM reports
    them in mmol/L (one decimal)."""
    import numpy as np

    pd, action, t1d, (cgm_sensor, random_scenario) = _quiet_import()
    rng = random.Random(seed * 1_000_033 + index)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        patient = t1d.withName(name(index), seed=seed * 7 + index)
        # pandas attribute access dominates the model's right-hand side: 20x faster as floats
        patient._params = SimpleNamespace(**patient._params.to_dict())
        sensor = cgm_sensor.withName("GuardianRT", seed=seed * 13 + index)
        quest = pd.read_csv(_quest_file())
        row = quest[quest.Name == name(index)].iloc[0]
        meals = random_scenario(start_time=datetime(2026, 1, 1), seed=seed * 17 + index)
        meals.random_gen = np.random.RandomState(seed * 17 + index)
    cr, cf = float(row.CR), float(row.CF)
    params = patient._params
    basal = params.u2ss * params.BW / 6000 * rng.uniform(0.85, 1.05)  # U/min
    readings: list[tuple[float, float]] = []
    for _day in range(days):
        plan = meals.create_scenario()["meal"]
        at = {int(t): float(g) for t, g in zip(plan["time"], plan["amount"], strict=True) if g > 0}
        for minute_of_day in range(DAY):
            carbs = at.get(minute_of_day, 0.0)
            bolus = 0.0
            if carbs:
                counted = carbs * rng.uniform(0.75, 1.25)
                glucose = sensor._last_CGM or params.Gb
                bolus = counted / cr + max(glucose - TARGET_MGDL, 0) / cf * (glucose > CORRECT_ABOVE_MGDL)
                if rng.random() < 0.05:  # bolused for the meal, ate half of it
                    carbs /= 2
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                patient.step(action(CHO=carbs, insulin=basal + bolus))
                if patient.t % STEP_MIN == 0:  # the sensor samples on its own clock
                    mgdl = float(sensor.measure(patient))
                    readings.append((float(patient.t), round(mgdl / MG_DL_PER_MMOL_L, 1)))
    return readings


def _quest_file() -> str:
    from importlib import resources

    return str(resources.files("simglucose") / "params" / "Quest.csv")


def _one(args: tuple[int, int, int]) -> list[tuple[float, float]]:
    return trace(*args)


def patients(
    count: int, days: int, seed: int, workers: int = 2
) -> Iterator[tuple[UUID, list[tuple[float, float]]]]:
    """`count` virtual patients' traces, computed on `workers` processes (the model is slow:
    about 1 s per patient-day on one core)."""
    jobs = [(p, days, seed) for p in range(count)]
    if workers <= 1:
        for p, job in enumerate(jobs):
            yield uuid5(NS, f"{seed}:{p}"), _one(job)
        return
    with ProcessPoolExecutor(workers) as pool:
        for p, readings in enumerate(pool.map(_one, jobs)):
            yield uuid5(NS, f"{seed}:{p}"), readings
