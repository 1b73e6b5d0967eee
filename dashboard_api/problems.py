"""Errors as RFC 9457 problem details, so every client gets a clear JSON message."""

from __future__ import annotations

from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

from telehealth.fhir.base import FHIR_JSON, outcome

PROBLEM = "application/problem+json"


class Problem(BaseModel):
    """RFC 9457 problem details, as every error of this API is answered."""

    model_config = ConfigDict(extra="allow")
    type: str = "about:blank"
    title: str
    status: int
    detail: str


def documented(description: str) -> dict[str, Any]:
    return {"model": Problem, "description": description, "content": {PROBLEM: {}}}


#: The error answers any API route may give, for the OpenAPI schema (clients and fuzzers).
RESPONSES: dict[int | str, dict[str, Any]] = {
    400: documented("the body is not valid JSON (or not UTF-8)"),
    401: documented("no bearer token, or it is unknown, expired or revoked"),
    403: documented("your role may not do this"),
    404: documented("not found, or not in your care (the two are answered alike)"),
    413: documented("the request body is too large"),
    422: documented("invalid request"),
}


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


def _fhir(request: Request) -> bool:
    """Under /fhir errors are FHIR OperationOutcomes (what FHIR clients parse), not problems."""
    return request.url.path == "/fhir" or request.url.path.startswith("/fhir/")


def fhir_error(status: int, detail: str) -> JSONResponse:
    # FHIR answers a search or read it cannot parse with 400, where the JSON API says 422
    status = 400 if status == 422 else status
    return JSONResponse(outcome(status, detail), status_code=status, media_type=FHIR_JSON)


def error_for(path: str, status: int, title: str, detail: str) -> JSONResponse:
    """The error answer for a request to `path`: an OperationOutcome under /fhir, else a
    problem (for the middleware, which answers before any route or handler)."""
    if path == "/fhir" or path.startswith("/fhir/"):
        return fhir_error(status, detail)
    return problem(status, title, detail)


def install(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        from http import HTTPStatus

        if _fhir(request):
            response = fhir_error(exc.status_code, str(exc.detail))
        else:
            response = problem(exc.status_code, HTTPStatus(exc.status_code).phrase, str(exc.detail))
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": [str(p) for p in e["loc"]], "msg": e["msg"]} for e in exc.errors()]
        detail = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors[:5])
        if _fhir(request):
            return fhir_error(422, detail)
        return problem(422, "Invalid request", detail, errors=errors)

    @app.exception_handler(psycopg.DataError)
    async def _unstorable(request: Request, exc: psycopg.DataError) -> JSONResponse:
        # A value that got past validation but that PostgreSQL cannot hold (a NUL in text, a
        # number out of range): the request is at fault, not the server.
        if _fhir(request):
            return fhir_error(422, f"a value cannot be used: {type(exc).__name__}")
        return problem(422, "Invalid request", f"a value cannot be stored: {type(exc).__name__}")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Still a problem document, with no internals; the traceback goes to the server log.
        if _fhir(request):
            return fhir_error(500, "an unexpected error; it has been logged")
        return problem(500, "Internal Server Error", "an unexpected error; it has been logged")
