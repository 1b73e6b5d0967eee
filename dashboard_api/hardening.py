"""HTTP hardening as plain ASGI middleware: body size limit, NUL refusal, security headers.

They run before routing, authentication and parsing, so an anonymous client cannot make the
server read or parse a huge body, and every response (errors included) carries the headers.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_to_bytes

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dashboard_api.problems import error_for

# The dashboard serves only its own files: no inline script, no framing, no third parties.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
_PAGES = ("/", "/agp", "/register", "/docs")
_CSP_BYTES = CSP.encode()
_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]


class SecurityHeaders:
    """CSP and friends on every response; `Cache-Control: no-store` on every API answer,
    since each is specific to its user and many carry patient data."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        no_store = path.startswith(("/api/", "/fhir/")) or path.endswith(".html") or path in _PAGES

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if not (no_store and k.lower() == b"cache-control")
                ]
                headers += [*_HEADERS, (b"content-security-policy", _CSP_BYTES)]
                if no_store:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyTooLarge(HTTPException):
    """Raised from `receive`: FastAPI re-raises HTTPExceptions met while reading the body, so
    this reaches the problem handler as a 413 and never becomes a 400 or a 500."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")


class RequestLimits:
    """413 for bodies over `max_body_bytes`, checked from Content-Length before anything is
    read, and by counting streamed (chunked) bytes; 422 for NUL characters in the path or
    query, which no field of this API may hold and PostgreSQL text cannot store."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.limit = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw_query: bytes = scope.get("query_string", b"")
        if "\x00" in scope["path"] or b"\x00" in unquote_to_bytes(raw_query):
            response = error_for(
                scope["path"], 422, "Invalid request", "NUL characters are not allowed in the URL"
            )
            await response(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.limit:
            too_large = str(BodyTooLarge(self.limit).detail)
            await error_for(scope["path"], 413, "Content Too Large", too_large)(scope, receive, send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge as exc:
            # Read outside a route (no handler saw it): answer here if nothing was sent yet.
            if started:
                raise
            await error_for(scope["path"], 413, "Content Too Large", str(exc.detail))(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def install(app: Any, *, max_body_bytes: int) -> None:
    """Outermost first: headers wrap the limits so that 413 and 422 answers carry them too."""
    app.add_middleware(RequestLimits, max_body_bytes=max_body_bytes)
    app.add_middleware(SecurityHeaders)
