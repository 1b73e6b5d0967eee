"""The patient's access-log page in a real browser, under the strict Content-Security-Policy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from telehealth.storage.people import add_user
from tests.browser import BROWSER_ARGS, CHROMIUM
from tests.factories import auth, make_patient, make_user

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="needs Debian's chromium (apt-get install chromium); .ci/run installs it",
)


async def test_patient_sees_who_read_their_data(
    api_url: str, db: psycopg.AsyncConnection[Any], http: httpx.AsyncClient
) -> None:
    from playwright.async_api import async_playwright, expect

    patient = await make_patient(db, "team-page")
    await add_user(db, "page-patient", "patient", password="page-pass-123", patient_id=patient)
    clinician = await make_user(db, "clinician", ["team-page"])
    doctor = (await http.get("/api/v1/auth/me", headers=auth(clinician))).json()["username"]
    assert (
        await http.get(f"/api/v1/patients/{patient}/observations", headers=auth(clinician))
    ).status_code == 200

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        page = await browser.new_page()
        problems: list[str] = []
        # Script errors and CSP violations show up here; failed fetches are checked by URL below.
        page.on(
            "console",
            lambda m: (
                problems.append(m.text)
                if m.type == "error" and not m.text.startswith("Failed to load resource")
                else None
            ),
        )
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on(
            "response",
            lambda r: (
                problems.append(f"{r.status} {r.url}")
                if r.status >= 400 and not r.url.endswith("/favicon.ico")
                else None
            ),
        )
        await page.goto(f"{api_url}/access-log")
        await page.fill("input[name=username]", "page-patient")
        await page.fill("input[name=password]", "page-pass-123")
        await page.click("#login-form button")
        await expect(page.locator("#who")).to_have_text("page-patient")
        row = page.locator("#log tbody tr", has_text=doctor)
        await expect(row).to_contain_text("read your readings")
        await expect(row).to_contain_text("direct care")
        await page.click("#logout")
        await expect(page.locator("#login")).to_be_visible()
        await browser.close()
    assert not problems, problems
    cur = await db.execute(
        "SELECT count(*) AS n FROM api_tokens t JOIN users u ON u.id = t.user_id "
        "WHERE u.username = 'page-patient' AND t.revoked_at IS NULL"
    )
    assert (await cur.fetchone()) == {"n": 0}, "signing out revokes the page's token"
