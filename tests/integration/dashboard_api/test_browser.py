"""The clinician's page in a real browser: sign in, an alert arrives live, acknowledge it in
the dialog, open the patient and see the reading against the threshold bands."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from simulators.publisher import Publisher
from telehealth.settings import Settings
from telehealth.storage.people import add_user
from telehealth.storage.thresholds import save_thresholds
from telehealth.thresholds import Thresholds
from tests.browser import BROWSER_ARGS, CHROMIUM
from tests.factories import make_device, make_patient

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="needs Debian's chromium (apt-get install chromium); .ci/run installs it",
)


async def test_clinician_sees_alert_live_acknowledges_and_reads_the_patient(
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
    assert settings.mqtt_url
    publisher = Publisher(settings.mqtt_relay_url(), client_id="ui-device")
    await publisher.connect()
    now = datetime.now(UTC)
    # Two hours of history in range, uploaded before the page opens (late: no alerts).
    for seq in range(1, 25):
        publisher.publish_reading(
            device.device_id,
            seq,
            [{"code": "glucose", "value": 6.0 + (seq % 5) * 0.4, "unit": "mmol/L", "source": "cgm"}],
            measured_at=now - timedelta(minutes=5 * (40 - seq)),
        )
    assert await publisher.drain()

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        page = await browser.new_page(viewport={"width": 1366, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("dialog", lambda dialog: errors.append(f"native dialog: {dialog.message}"))
        await page.goto(api_url)
        await page.fill("input[name=username]", "ui-clinician")
        await page.fill("input[name=password]", "ui-pass-123")
        await page.click("#login-form button")
        await expect(page.locator("#who")).to_have_text("ui-clinician (clinician)")
        await expect(page.locator("#live-status")).to_have_text("Live")
        await expect(page.locator("#patients tbody tr", has_text=name)).to_be_visible()

        publisher.publish_reading(
            device.device_id,
            100,
            [{"code": "glucose", "value": 2.6, "unit": "mmol/L", "source": "cgm"}],
            measured_at=datetime.now(UTC),
        )
        assert await publisher.drain()

        # Pushed, not polled: the row appears without a reload and is announced.
        alert_row = page.locator("#alerts tbody tr", has_text=name)
        await expect(alert_row).to_contain_text("Glucose urgent low", timeout=20_000)
        await expect(alert_row.locator("td").first).to_have_text("urgent")
        await expect(alert_row.locator("time")).to_have_count(1)
        await expect(page.locator("#announce-urgent")).to_contain_text("New urgent alert")
        patient_row = page.locator("#patients tbody tr", has_text=name)
        await expect(patient_row).to_contain_text("urgent: Glucose urgent low")
        await expect(patient_row).to_contain_text("2.6 mmol/L")

        await alert_row.locator("button", has_text="Acknowledge").click()
        dialog = page.locator("#action-dialog")
        await expect(dialog).to_be_visible()
        await expect(page.locator("#action-note")).to_be_focused()
        await page.fill("#action-note", "on my way")
        await page.click("#action-confirm")
        await expect(dialog).to_be_hidden()
        await expect(alert_row).to_contain_text("acknowledged by ui-clinician", timeout=10_000)
        # Focus went back to the row's remaining action, not lost to <body>.
        await expect(alert_row.locator("button", has_text="Resolve")).to_be_focused()

        # Resolving without a note is refused inline, in the dialog.
        await alert_row.locator("button", has_text="Resolve").click()
        await page.click("#action-confirm")
        await expect(page.locator("#action-error")).to_contain_text("needs a note")
        await page.click("#action-cancel")

        # A setting the form does not show (set through the API) survives a save of the form.
        await save_thresholds(db, patient, Thresholds(glucose_urgent_renotify_minutes=45), "api")
        await db.commit()
        await page.locator("#patients button", has_text=name).click()
        await expect(page.locator("#patient-name")).to_have_text(name)
        glucose = page.locator("#chart-glucose svg")
        await expect(glucose.locator('rect[data-band="urgent-low"]')).to_have_count(1)
        await expect(glucose.locator('rect[data-band="low"] title')).to_have_text("Warning: below 3.9 mmol/L")
        await expect(glucose.locator("circle.dot")).to_have_count(25)
        await expect(glucose.locator("text.tick.x").first).to_be_visible()
        await expect(page.locator("#cgm-summary .tir-list")).to_contain_text("Target range")

        # Thresholds edited in the form redraw the band.
        await page.fill("#thresholds-form input[name=glucose_low]", "4.5")
        await page.click("#thresholds-form button[type=submit]")
        await expect(page.locator("#thresholds-saved")).to_contain_text("version 2")
        await expect(glucose.locator('rect[data-band="low"] title')).to_have_text("Warning: below 4.5 mmol/L")

        await page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
        # A tablet in portrait: one column, nothing wider than the screen.
        await page.set_viewport_size({"width": 820, "height": 1180})
        await expect(glucose.locator('rect[data-band="urgent-low"]')).to_be_visible()
        overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0
        await page.screenshot(path=str(tmp_path / "dashboard-tablet.png"), full_page=True)
        await browser.close()
    await publisher.close()
    assert errors == []

    cur = await db.execute(
        "SELECT e.actor, e.note FROM alert_events e JOIN alerts a ON a.id = e.alert_id "
        "WHERE a.patient_id = %s AND e.status = 'acknowledged'",
        (patient,),
    )
    assert await cur.fetchall() == [{"actor": "ui-clinician", "note": "on my way"}]
    cur = await db.execute(
        "SELECT settings FROM patient_thresholds WHERE patient_id = %s ORDER BY version DESC LIMIT 1",
        (patient,),
    )
    saved = (await cur.fetchone() or {})["settings"]
    assert (saved["glucose_low"], saved["glucose_urgent_renotify_minutes"]) == (4.5, 45)
