"""Device publish -> alert visible on the clinician's page, in a real browser.

Starts embedded servers and the services, signs a clinician in to the dashboard in Chromium
(Playwright), then repeats: publish an urgent SpO2 reading (88 %) and time until the alert's
row is in the page's inbox (a MutationObserver in the page notes the time of the next
animation frame after the row was inserted: the frame that paints it); publish a normal one
(97 %) and wait for the row to leave. Each probe uses a fresh oximeter of the patient: on one
device, 97 then 88 within 5 minutes is judged a motion artefact and never alarms. Both
clocks are this machine's wall clock. Optional background load from rate-limited publishers,
as in `telehealth bench`.

    python -m bench.ui_latency --probes 20 [--background 5000] [--screenshot docs/dashboard.png]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import statistics
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg

from bench.load import background_publishers
from launcher.embedded import free_port
from launcher.stack import Servers, Services, wait_http_ok
from simulators.cohort import SimPatient, ensure_cohort, nhs_number_for
from simulators.publisher import Publisher
from telehealth.broker.admin import device_logins
from telehealth.contracts import wire_time
from telehealth.settings import Settings
from telehealth.storage import migrate
from telehealth.storage.devices import provision
from telehealth.storage.people import add_patient, add_user
from telehealth.topics import readings_topic

CHROMIUM = "/usr/bin/chromium"
BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
]
PASSWORD = "bench-pass-123"

# Runs in the page through Playwright's evaluate (not a page script): records when a new
# inbox row is inserted and when the next frame is painted.
_OBSERVE = """() => {
  window.__seen = [];
  const tbody = document.querySelector('#alerts tbody');
  new MutationObserver((mutations) => {
    for (const m of mutations) for (const node of m.addedNodes) {
      if (node.dataset && node.dataset.alert && !window.__seen.some((s) => s.id === node.dataset.alert)) {
        const entry = { id: node.dataset.alert, inserted: performance.timeOrigin + performance.now() };
        window.__seen.push(entry);
        requestAnimationFrame(() => { entry.painted = performance.timeOrigin + performance.now(); });
      }
    }
  }).observe(tbody, { childList: true });
}"""


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)] if ordered else float("nan")


async def _setup(url: str, probes: int) -> tuple[UUID, str, str, list[str]]:
    """A patient with a CGM and an oximeter in team `ui-bench`, a clinician of that team, and
    one more oximeter of the patient per probe."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        row = await add_patient(
            conn,
            nhs_number=nhs_number_for(90_001),
            name="Alex Example",
            birth_date=date(1958, 3, 14),
            sex="female",
            conditions=["t1d", "copd"],
            care_team="ui-bench",
        )
        patient: UUID = row["id"]
        cgm = await provision(conn, device_id="cgm-ui-bench", patient_id=patient, kind="cgm")
        oxi = await provision(conn, device_id="oxi-ui-bench", patient_id=patient, kind="oximeter")
        probe_devices = [
            (await provision(conn, device_id=f"oxi-ui-probe-{i:03d}", patient_id=patient, kind="oximeter"))
            for i in range(probes)
        ]
        await add_user(conn, "dr-bench", "clinician", password=PASSWORD, care_teams=["ui-bench"])
    return patient, cgm.device_id, oxi.device_id, [d.device_id for d in probe_devices]


async def _load_cohort(settings: Settings) -> list[SimPatient]:
    """Devices for the background load (they publish through the relay login)."""
    assert settings.database_url
    async with device_logins(settings) as logins:
        return await ensure_cohort(settings.database_url, 200, logins=logins, care_team="ui-bench-load")


async def _history(mqtt_url: str, cgm: str, oxi: str, days: int) -> int:
    """Days of plausible CGM and oximetry, uploaded as store-and-forward backlogs."""
    rng = random.Random(7)
    now = datetime.now(UTC)
    publisher = Publisher(mqtt_url, client_id="ui-bench-history")
    await publisher.connect()
    steps = days * 288
    batch: dict[str, list[dict[str, Any]]] = {cgm: [], oxi: []}
    sent = 0
    for k in range(steps, 0, -1):
        at = now - timedelta(minutes=5 * k)
        hour = at.hour + at.minute / 60
        meals = sum(3.2 * math.exp(-((((hour - h) % 24) / 1.4 - 1) ** 2)) for h in (7.5, 12.5, 18.5))
        glucose = max(2.4, 5.4 + meals + 1.2 * math.sin(hour / 24 * 2 * math.pi) + rng.gauss(0, 0.5))
        if k % 700 < 8:  # an occasional overnight low
            glucose = 3.1 + rng.random()
        batch[cgm].append(_reading(cgm, steps - k + 1, at, [("glucose", round(glucose, 1), "mmol/L")]))
        spo2 = min(100, round(95.5 + rng.gauss(0, 1.2)))
        pulse = round(72 + 10 * math.sin(hour / 24 * 2 * math.pi) + rng.gauss(0, 4))
        batch[oxi].append(_reading(oxi, steps - k + 1, at, [("spo2", spo2, "%"), ("pulse", pulse, "/min")]))
        for device, items in batch.items():
            if len(items) == 200 or (k == 1 and items):
                publisher.publish_raw(readings_topic(device), json.dumps(items).encode())
                sent += len(items)
                items.clear()
    await publisher.close()
    return sent


def _reading(device: str, seq: int, at: datetime, obs: list[tuple[str, float, str]]) -> dict[str, Any]:
    observations = [
        {"code": c, "value": v, "unit": u} | ({"source": "cgm"} if c == "glucose" else {}) for c, v, u in obs
    ]
    return {"device_id": device, "seq": seq, "measured_at": wire_time(at), "observations": observations}


async def _probe(
    api_url: str, mqtt_url: str, oximeters: list[str], screenshot: Path | None, history_ms: float
) -> list[tuple[int, float, float]]:
    from playwright.async_api import async_playwright, expect

    latencies: list[tuple[int, float, float]] = []  # (alert id, published, painted), ms
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        page = await browser.new_page(viewport={"width": 1366, "height": 900})
        await page.goto(api_url)
        await page.fill("input[name=username]", "dr-bench")
        await page.fill("input[name=password]", PASSWORD)
        await page.click("#login-form button")
        await expect(page.locator("#live-status")).to_have_text("Live", timeout=20_000)
        await page.evaluate(_OBSERVE)
        publisher = Publisher(mqtt_url, client_id="ui-bench-probe")
        await publisher.connect()
        seq = int(history_ms)
        for oxi in oximeters:  # warm the services' device caches: a pulse-only reading each
            publisher.publish_reading(oxi, seq, [{"code": "pulse", "value": 75, "unit": "/min"}])
        assert await publisher.drain()
        await asyncio.sleep(2)
        rows = page.locator("#alerts tbody tr")
        probes = len(oximeters) - 1
        for i, oxi in enumerate(oximeters):
            seq += 1
            sent = time.time() * 1000
            publisher.publish_reading(oxi, seq, [{"code": "spo2", "value": 88, "unit": "%"}])
            # functions, not expressions: the page's CSP forbids eval
            await page.wait_for_function(
                "(i) => window.__seen.length > i && !!window.__seen[i].painted", arg=i, timeout=120_000
            )
            entry = await page.evaluate("(i) => window.__seen[i]", i)
            if i > 0:  # the first one warms up caches and connections
                latencies.append((int(entry["id"]), sent, entry["painted"]))
            if i == probes:
                break
            seq += 1
            publisher.publish_reading(oxi, seq, [{"code": "spo2", "value": 97, "unit": "%"}])
            try:
                await expect(rows).to_have_count(0, timeout=120_000)
            except AssertionError as exc:
                raise RuntimeError(f"probe {i}: inbox still shows {await rows.all_inner_texts()}") from exc
        await publisher.close()
        if screenshot is not None:
            await page.locator("#patients button", has_text="Alex Example").click()
            await expect(
                page.locator("#chart-glucose svg circle, #chart-glucose svg path.line").first
            ).to_be_attached()
            await expect(page.locator("#cgm-summary table")).to_be_visible()
            await expect(page.locator("#patients tbody tr").first).to_contain_text("88 %")
            await page.screenshot(path=str(screenshot), full_page=True)
        await browser.close()
    return latencies


def _background(
    mqtt_url: str, devices: list[str], readings_s: float, seconds: float
) -> tuple[list[Any], Any]:
    """Publisher processes; the queue is returned so it outlives their start-up (spawn)."""
    if not readings_s:
        return [], None
    workers, out = background_publishers(mqtt_url, devices, readings_s, seconds, per_message=10)
    for w in workers:
        w.start()
    return workers, out


async def _opened_at(url: str, alert_ids: list[int]) -> dict[int, float]:
    """When each alert's open event was written (DB clock, in the processor's transaction), ms."""
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute(
            "SELECT alert_id, extract(epoch FROM at) * 1000 FROM alert_events"
            " WHERE status = 'open' AND alert_id = ANY(%s)",
            (alert_ids,),
        )
        return {int(r[0]): float(r[1]) for r in await cur.fetchall()}


def _line(name: str, values: list[float]) -> str:
    return (
        f"  {name}: p50 {_pct(values, 0.5):.0f} ms, p99 {_pct(values, 0.99):.0f} ms, "
        f"min {min(values):.0f} ms, max {max(values):.0f} ms, mean {statistics.fmean(values):.0f} ms"
    )


async def _stored_between(url: str, devices: list[str], start: float, end: float) -> int:
    """Background readings the pipeline received during the probes (what load it really saw)."""
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM reading_receipts WHERE device_id = ANY(%s)"
            " AND received_at >= to_timestamp(%s) AND received_at < to_timestamp(%s)",
            (devices, start, end),
        )
        row = await cur.fetchone()
    return int(row[0]) if row else 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=20)
    parser.add_argument("--background", type=float, default=0, help="readings/s of background load")
    parser.add_argument("--history-days", type=int, default=14, help="CGM/oximetry history to seed")
    parser.add_argument("--screenshot", type=Path, help="save the page with the patient open here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="telehealth-ui-") as tmp:
        servers = Servers(Path(tmp))
        settings = servers.start(Settings(_env_file=None, api_port=free_port()))
        assert settings.database_url and settings.mqtt_url
        services = Services(settings, Path(tmp) / "logs")
        workers: list[Any] = []
        try:
            migrate(settings.database_url)
            patient, cgm, oxi, oximeters = asyncio.run(_setup(settings.database_url, args.probes + 1))
            background = []
            if args.background:
                cohort = asyncio.run(_load_cohort(settings))
                background = [d.device_id for c in cohort for d in c.devices.values()]
            for name in ("processor", "gateway", "api"):
                services.start(name, name)
            api_url = f"http://127.0.0.1:{settings.api_port}"
            wait_http_ok(f"{api_url}/readyz")
            time.sleep(3)  # consumer group join and MQTT subscription
            if args.history_days:
                n = asyncio.run(_history(settings.mqtt_relay_url(), cgm, oxi, args.history_days))
                print(f"seeded {n} history readings for patient {patient}", flush=True)
            workers, _queue = _background(
                settings.mqtt_relay_url(), background, args.background, args.probes * 3 + 60
            )
            if workers:
                time.sleep(2)
            started = time.time()
            latencies = asyncio.run(
                _probe(api_url, settings.mqtt_relay_url(), oximeters, args.screenshot, started * 1000)
            )
            ended = time.time()
            load = 0.0
            if background:
                stored = asyncio.run(_stored_between(settings.database_url, background, started, ended))
                load = stored / (ended - started)
            opened = asyncio.run(_opened_at(settings.database_url, [a for a, _, _ in latencies]))
            print(
                f"{len(latencies)} alerts, background {load:,.0f} readings/s received"
                f" (target {args.background:,.0f})"
            )
            print(_line("publish -> alert painted in the page", [p - s for _, s, p in latencies]))
            print(_line("publish -> open event written (DB)", [opened[a] - s for a, s, _ in latencies]))
            print(_line("open event written -> painted", [p - opened[a] for a, _, p in latencies]))
            if dead := services.dead():
                raise RuntimeError(f"{dead} died; see {tmp}/logs")
        finally:
            for w in workers:
                w.terminate()
            services.stop()
            servers.stop()


if __name__ == "__main__":
    main()
