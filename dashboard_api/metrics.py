"""Request counters for the API's `/metrics`: by method, route template and status.

Route templates (`/api/v1/patients/{patient_id}`), never raw paths, so ids do not become
label values. Plain ASGI, so streamed responses (SSE) are counted when they start.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUESTS = Counter("telehealth_api_requests", "HTTP requests answered", ["method", "route", "status"])
SECONDS = Histogram(
    "telehealth_api_request_seconds",
    "From request to response start",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


class RequestMetrics:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                route = _route(scope)
                REQUESTS.labels(scope["method"], route, str(message["status"])).inc()
                SECONDS.labels(route).observe(time.perf_counter() - began)
            await send(message)

        await self.app(scope, receive, counted)


def _route(scope: Scope) -> str:
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"


def install(app: Any) -> None:
    app.add_middleware(RequestMetrics)
