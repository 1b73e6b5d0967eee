"""Nightscout upload throughput beside the MQTT path, in one run on one machine.

    python -m bench.nightscout [--readings 20000] [--uploaders 20] [--concurrency 8]

Starts embedded servers and the gateway, processor and API, then stores the same number of
glucose readings three ways, each timed from the first send until the last reading is stored
(exactly once): MQTT QoS 1 through the gateway (one reading per message, publisher processes
as `telehealth bench` uses them), HTTP `POST /api/v1/entries` with one entry per request (an
app uploading live), and with 288 entries per request (a day's backfill). The HTTP load
generator runs in this process with `--concurrency` requests in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import psycopg

from bench.fleet import admin_cohort
from bench.run import end_to_end, load_address
from launcher.embedded import free_port
from launcher.stack import Servers, Services, wait_http_ok
from telehealth.settings import Settings
from telehealth.storage import migrate, uploaders
from telehealth.storage.db import connect


@dataclass
class Result:
    label: str
    readings: int
    stored: int
    acked_s: float
    stored_s: float

    def line(self) -> str:
        return (
            f"{self.label:<44} {self.stored / self.stored_s:8,.0f} readings/s stored"
            f" (answered at {self.readings / self.acked_s:,.0f}/s; {self.stored}/{self.readings} stored)"
        )


async def _uploaders(url: str, patients: list[UUID], count: int) -> list[str]:
    """API-SECRET header values of fresh uploaders, spread over the patients."""
    stamp = int(time.time())
    async with await connect(url) as conn:
        made = [
            await uploaders.provision(
                conn, device_id=f"bench-ns-{stamp}-{i}", patient_id=patients[i % len(patients)]
            )
            for i in range(count)
        ]
    return [c.api_secret_sha1 for c in made]


def _stored(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM reading_receipts").fetchone()
    assert row is not None
    return int(row[0])


async def _wait_stored(url: str, target: int, timeout: float = 600) -> int:
    deadline = time.monotonic() + timeout
    while True:
        stored = await asyncio.to_thread(_stored, url)
        if stored >= target or time.monotonic() > deadline:
            return stored
        await asyncio.sleep(0.05)


async def http_path(
    settings: Settings, api: str, secrets: list[str], readings: int, per_request: int, concurrency: int
) -> Result:
    """Upload `readings` entries spread over the uploaders, `per_request` per POST."""
    assert settings.database_url
    base = int(datetime.now(UTC).timestamp() * 1000) - 6 * 3600 * 1000
    requests: list[tuple[str, list[dict[str, Any]]]] = []
    per_uploader = readings // len(secrets)
    offset = int(time.time() * 1000) % 1_000_000  # fresh dates per run: nothing is a re-upload
    for secret in secrets:
        for start in range(0, per_uploader, per_request):
            batch = [
                {"type": "sgv", "date": base + (offset + k) * 10, "sgv": 100 + k % 150, "direction": "Flat"}
                for k in range(start, min(start + per_request, per_uploader))
            ]
            requests.append((secret, batch))
    total = sum(len(b) for _, b in requests)
    before = await asyncio.to_thread(_stored, settings.database_url)
    queue: asyncio.Queue[tuple[str, list[dict[str, Any]]]] = asyncio.Queue()
    for item in requests:
        queue.put_nowait(item)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            secret, batch = queue.get_nowait()
            response = await client.post("/api/v1/entries", json=batch, headers={"API-SECRET": secret})
            if response.status_code != 200:
                raise RuntimeError(f"upload answered {response.status_code}: {response.text[:200]}")

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=api, timeout=60, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        acked = time.perf_counter() - started
    stored = await _wait_stored(settings.database_url, before + total) - before
    return Result(
        f"HTTP entries, {per_request} per request", total, stored, acked, time.perf_counter() - started
    )


def run(readings: int, uploader_count: int, concurrency: int, publishers: int) -> list[Result]:
    results = []
    with tempfile.TemporaryDirectory(prefix="telehealth-bench-ns-") as tmp:
        servers = Servers(Path(tmp))
        try:
            settings = servers.start(Settings(_env_file=None, api_port=free_port()))
            # the load generator is one client per uploader at full speed: lift the per-minute limit
            os.environ["TELEHEALTH_NIGHTSCOUT_REQUESTS_PER_MIN"] = str(10**9)
            assert settings.database_url
            migrate(settings.database_url)
            cohort = asyncio.run(admin_cohort(settings, max(1, uploader_count)))
            ids = [d.device_id for p in cohort for d in p.devices.values()]
            secrets = asyncio.run(
                _uploaders(settings.database_url, [p.patient_id for p in cohort], uploader_count)
            )
            services = Services(settings, Path(tmp) / "logs")
            services.start("processor", "processor")
            services.start("gateway", "gateway")
            services.start("api", "api")
            api = f"http://127.0.0.1:{settings.api_port}"
            wait_http_ok(f"{api}/readyz")
            try:
                print("MQTT, 1 reading per message ...", flush=True)
                began = time.perf_counter()
                rate, stored = end_to_end(
                    settings, services, ids, readings, 1, publishers, load_address(settings, False)
                )
                elapsed = readings / rate if rate else time.perf_counter() - began
                results.append(
                    Result("MQTT -> gateway, 1 reading per message", readings, stored, elapsed, elapsed)
                )
                for per_request in (1, 288):
                    print(f"HTTP, {per_request} entries per request ...", flush=True)
                    count = readings if per_request > 1 else readings // 4
                    results.append(
                        asyncio.run(http_path(settings, api, secrets, count, per_request, concurrency))
                    )
                if dead := services.dead():
                    raise RuntimeError(f"{dead} died during the benchmark; see logs")
            finally:
                services.stop()
        finally:
            servers.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--readings", type=int, default=20_000)
    parser.add_argument("--uploaders", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--publishers", type=int, default=2)
    args = parser.parse_args()
    results = run(args.readings, args.uploaders, args.concurrency, args.publishers)
    mqtt = results[0].stored / results[0].stored_s
    for result in results:
        ratio = result.stored / result.stored_s / mqtt
        print(f"{result.line()}  ratio to MQTT {ratio:.2f}")


if __name__ == "__main__":
    main()
