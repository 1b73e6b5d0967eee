"""The clinician's page in a real browser: sign in, see an alert arrive, acknowledge it."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from simulators.publisher import Publisher
from telehealth.settings import Settings
from telehealth.storage.people import add_user
from tests.factories import make_device, make_patient

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="needs Debian's chromium (apt-get install chromium); .ci/run installs it",
)
BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


async def test_clinician_signs_in_sees_alert_and_acknowledges(
    api_url: str, settings: Settings, db: psycopg.AsyncConnection[Any], tmp_path: Path
) -> None:
    from playwright.async_api import async_playwright, expect

    patient = await make_patient(db, "team-ui")
    cur = await db.execute("SELECT name FROM patients WHERE id = %s", (patient,))
    row = await cur.fetchone()
    assert row is not None
    name = row["name"]
    device = await make_device(db, patient, "cgm")
    await add_user(db, "ui-clinician", "clinician", password="ui-pass-123", care_teams=["team-ui"])

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        page = await browser.new_page()
        page.on("dialog", lambda dialog: dialog.accept("on my way"))
        await page.goto(api_url)
        await page.fill("input[name=username]", "ui-clinician")
        await page.fill("input[name=password]", "ui-pass-123")
        await page.click("#login-form button")
        await expect(page.locator("#who")).to_have_text("ui-clinician (clinician)")

        assert settings.mqtt_url
        publisher = Publisher(settings.mqtt_relay_url(), client_id="ui-device")
        await publisher.connect()
        publisher.publish_reading(
            device.device_id,
            1,
            [{"code": "glucose", "value": 2.6, "unit": "mmol/L"}],
            measured_at=datetime.now(UTC),
        )
        await publisher.close()

        alert_row = page.locator("#alerts tbody tr", has_text=name)
        await expect(alert_row).to_contain_text("Glucose urgent low", timeout=20_000)
        await expect(alert_row.locator("td").first).to_have_text("urgent")
        patient_row = page.locator("#patients tbody tr", has_text=name)
        await expect(patient_row).to_contain_text("2.6 mmol/L")

        await alert_row.locator("button", has_text="Acknowledge").click()
        await expect(alert_row).to_contain_text("acknowledged", timeout=10_000)
        await page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
        await browser.close()

    cur = await db.execute(
        "SELECT e.actor, e.note FROM alert_events e JOIN alerts a ON a.id = e.alert_id "
        "WHERE a.patient_id = %s AND e.status = 'acknowledged'",
        (patient,),
    )
    assert await cur.fetchall() == [{"actor": "ui-clinician", "note": "on my way"}]
