"""Clinician queries through the dashboard API while ingest runs.

A seeded patient (14 days of 5-minute CGM glucose, written straight into the tables: this
measures reads, not ingest) is read back the way the dashboard does: the last 24 h of
observations and the 14-day glucose summary, each request timed from send to the last
byte, over one keep-alive connection per query kind, while the bench's load publishes.

Timings are kept per phase of the run (`during`): idle, the end-to-end burst (as fast as the
publishers can: saturating), each step of the offered-load sweep. One figure over the whole
run mixed an idle API with a saturated machine; per phase, the report says up to which load
the queries keep their target.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import psycopg
from psycopg.errors import UniqueViolation

from simulators.cohort import nhs_number_for
from telehealth.codes import CODES
from telehealth.storage.devices import provision
from telehealth.storage.people import add_patient, add_user

PASSWORD = "bench-queries-123"
QUERIES = {
    "observations 24 h": "/api/v1/patients/{patient}/observations",
    "glucose summary 14 d": "/api/v1/patients/{patient}/glucose-summary?days=14",
}


@dataclass
class QueryStats:
    requests: int = 0
    errors: int = 0
    ms: list[float] = field(default_factory=list, repr=False)

    def pct(self, q: float) -> float:
        ordered = sorted(self.ms)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else math.nan

    def summary(self) -> dict[str, float]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "p50_ms": self.pct(0.5),
            "p99_ms": self.pct(0.99),
            "max_ms": max(self.ms, default=math.nan),
        }


async def seed(database_url: str, days: int = 14) -> tuple[UUID, str]:
    """A patient with `days` of CGM readings, and a clinician of their care team; (patient, user).

    Names are new each run, so the bench can run again against the same database.
    """
    spec = CODES["glucose"]
    now = datetime.now(UTC)
    run = uuid4().hex[:8]
    team = f"bench-queries-{run}"
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        index = 95_001
        while True:
            try:
                row = await add_patient(
                    conn,
                    nhs_number=nhs_number_for(index),
                    name="Query Bench",
                    birth_date=date(1970, 1, 1),
                    sex="female",
                    conditions=["t1d"],
                    care_team=team,
                )
                break
            except UniqueViolation:  # an earlier run's patient
                index += 1
        patient: UUID = row["id"]
        device = await provision(conn, device_id=f"cgm-bench-queries-{run}", patient_id=patient, kind="cgm")
        await add_user(conn, f"dr-queries-{run}", "clinician", password=PASSWORD, care_teams=[team])
        points = [now - timedelta(minutes=5 * i) for i in range(days * 288)]
        async with conn.cursor() as cur:
            async with cur.copy(
                "COPY readings (patient_id, measured_at, code, value, unit, loinc, source, device_id,"
                " seq, received_at) FROM STDIN"
            ) as copy:
                for seq, at in enumerate(points):
                    value = 7.0 + 3.0 * math.sin(seq / 40)
                    row_ = (patient, at, "glucose", value, spec.canonical_unit, spec.loinc_for("cgm"))
                    await copy.write_row((*row_, "cgm", device.device_id, seq, at))
            async with cur.copy(
                "COPY reading_receipts (device_id, seq, patient_id, measured_at, received_at) FROM STDIN"
            ) as copy:
                for seq, at in enumerate(points):
                    await copy.write_row((device.device_id, seq, patient, at, at))
    return patient, f"dr-queries-{run}"


async def add_clinician(database_url: str, team: str) -> str:
    """A new clinician of `team` (new name each run); their username."""
    username = f"dr-{team}-{uuid4().hex[:8]}"
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await add_user(conn, username, "clinician", password=PASSWORD, care_teams=[team])
    return username


def token(host: str, port: int, username: str, password: str = PASSWORD) -> str:
    """A bearer token for a bench user, from the API's own sign-in."""
    conn = http.client.HTTPConnection(host, port, timeout=30)
    body = json.dumps({"username": username, "password": password})
    conn.request("POST", "/api/v1/auth/token", body, {"Content-Type": "application/json"})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    if response.status != 200:
        raise RuntimeError(f"bench clinician could not sign in: {response.status} {data[:200]!r}")
    token: str = json.loads(data)["access_token"]
    return token


class QueryLoad:
    """Threads that repeat each query back to back (with a short pause) until stopped; a
    request counts towards the phase it started in, and outside any phase not at all."""

    def __init__(self, host: str, port: int, patient: UUID, username: str, pause_s: float = 0.05) -> None:
        self._host, self._port, self._pause = host, port, pause_s
        self._headers = {"Authorization": f"Bearer {token(host, port, username)}"}
        #: phase -> query name -> timings
        self.stats: dict[str, dict[str, QueryStats]] = {}
        self._phase: str | None = None
        self._paths = {name: path.format(patient=patient) for name, path in QUERIES.items()}
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, args=(n,), daemon=True) for n in QUERIES]

    @contextlib.contextmanager
    def during(self, phase: str) -> Iterator[None]:
        self._phase = phase
        try:
            yield
        finally:
            self._phase = None

    def _loop(self, name: str) -> None:
        path = self._paths[name]
        conn = http.client.HTTPConnection(self._host, self._port, timeout=30)
        while not self._stop.is_set():
            phase = self._phase
            started = time.perf_counter()
            try:
                conn.request("GET", path, headers=self._headers)
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(self._host, self._port, timeout=30)
                ok = False
            if phase is not None:
                stats = self.stats.setdefault(phase, {}).setdefault(name, QueryStats())
                stats.requests += 1
                if ok:
                    stats.ms.append(1000 * (time.perf_counter() - started))
                else:
                    stats.errors += 1
            self._stop.wait(self._pause)
        conn.close()

    def __enter__(self) -> QueryLoad:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=35)

    def summary(self) -> dict[str, dict[str, dict[str, float]]]:
        return {
            phase: {name: s.summary() for name, s in by_name.items()} for phase, by_name in self.stats.items()
        }
