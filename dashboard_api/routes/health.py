"""Liveness, readiness (database, both brokers, and a pipeline that moves) and Prometheus metrics."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from dashboard_api.deps import SettingsDep, get_pool
from telehealth import heartbeat
from telehealth.mqtt import parse_mqtt_url
from telehealth.storage import db

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def _tcp(host: str, port: int) -> None:
    _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout=2)
    writer.close()
    await writer.wait_closed()


async def _check_kafka(bootstrap: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
    try:
        await asyncio.wait_for(admin.start(), timeout=3)
        await asyncio.wait_for(admin.list_topics(), timeout=3)
    finally:
        await admin.close()


@router.get("/readyz")
async def readyz(request: Request, settings: SettingsDep) -> JSONResponse:
    checks: dict[str, Any] = {}

    async def run(name: str, check: Any) -> None:
        try:
            await check
            checks[name] = "ok"
        except Exception as exc:  # readiness reports any failure, it does not raise
            checks[name] = f"failed: {type(exc).__name__}: {exc}"[:300]

    async def database() -> None:
        async with get_pool(request).connection(timeout=2) as conn:
            await db.ping(conn)
            # Heartbeats: every service alive, none holding work without progress.
            alive = timedelta(seconds=max(5.0, 5 * settings.heartbeat_s))
            now, beats = await heartbeat.recent(conn, timedelta(hours=1))
            verdict = heartbeat.assess(
                beats, now, alive=alive, stall=timedelta(seconds=settings.stall_after_s)
            )
            checks.update(verdict)

    jobs = [run("database", database())]
    if settings.kafka_bootstrap:
        jobs.append(run("kafka", _check_kafka(settings.kafka_bootstrap)))
    if settings.mqtt_url:
        address = parse_mqtt_url(settings.mqtt_url)
        jobs.append(run("mqtt", _tcp(address.host, address.port)))
    await asyncio.gather(*jobs)
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks}, status_code=200 if ready else 503
    )


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
