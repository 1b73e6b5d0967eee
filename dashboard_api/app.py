"""Application factory: one pool per process, routes split by resource."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from dashboard_api import docs_page, hardening, metrics, problems
from dashboard_api.intake import Intake
from dashboard_api.live import AlertHub
from dashboard_api.routes import (
    alerts,
    audit,
    auth,
    consent,
    data_uses,
    devices,
    fhir,
    fhir_cgm,
    glance,
    glucose,
    health,
    nightscout_read,
    nightscout_treatments,
    nightscout_upload,
    nightscout_v3,
    page,
    patients,
    register,
    research,
    stream,
    thresholds,
    treatments,
)
from telehealth.settings import Settings, get_settings
from telehealth.storage import open_pool
from telehealth.storage.consent_cache import ConsentCache


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.require("database_url")
        assert settings.database_url
        app.state.settings = settings
        # Autocommit: a write is durable before its endpoint returns, never after the response;
        # multi-statement writes use explicit `conn.transaction()` blocks.
        app.state.pool = await open_pool(settings.database_url, max_size=10, autocommit=True)
        app.state.alert_hub = AlertHub(settings.database_url)
        await app.state.alert_hub.start()
        # Research releases decide their cohort's consent from memory, kept current by LISTEN
        # and checked against the consent clock in each release's transaction.
        app.state.consent = ConsentCache()
        stop_consent = asyncio.Event()
        consent_listener = asyncio.create_task(app.state.consent.listen(settings.database_url, stop_consent))
        # Nightscout uploads produce to Kafka; connected in the background, only if configured
        app.state.intake = Intake(settings)
        app.state.intake.start()
        try:
            yield
        finally:
            await app.state.intake.stop()
            stop_consent.set()
            consent_listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consent_listener
            await app.state.alert_hub.stop()
            await app.state.pool.close()

    app = FastAPI(
        title="Telehealth stream",
        version="0.1.0",
        description="Remote monitoring for direct care, consent-aware secondary use.",
        lifespan=lifespan,
        docs_url=None,  # served from pip-installed files under the app's CSP: docs_page
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    problems.install(app)
    hardening.install(app, max_body_bytes=settings.api_max_body_bytes)
    metrics.install(app)  # outermost: every answer counts, refusals included
    for module in (health, page):
        app.include_router(module.router)
    for module in (auth, patients, glance, glucose, thresholds, devices, stream, alerts, audit):
        app.include_router(module.router, responses=problems.RESPONSES)
    for module in (consent, data_uses, research, register, treatments):
        app.include_router(module.router, responses=problems.RESPONSES)
    for module in (nightscout_upload, nightscout_read, nightscout_treatments, nightscout_v3):
        app.include_router(module.router)
    for module in (fhir, fhir_cgm):
        app.include_router(module.router)
    docs_page.install(app)
    static = resources.files("dashboard_api") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    return app
