"""Every error on `/api` leaves as `application/problem+json` (RFC 9457) with a stable `type`.

Validation errors name the offending field (`body.name`, `query.limit`) in `detail` and list
all of them in `errors`; malformed JSON is a 400; a database that cannot be reached is a 503.
Nothing internal (tracebacks, SQL) ever reaches the client.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, IntegrityError
from starlette.exceptions import HTTPException

from capstan.errors import CapstanError
from capstan.store.engine import is_unavailable

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger(__name__)


def problem(status: int, slug: str, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {
        "type": f"urn:capstan:problem:{slug}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    body.update({k: v for k, v in extra.items() if v is not None})
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in loc)


async def _capstan_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CapstanError)
    return problem(exc.status, exc.slug, exc.title, exc.detail, field=exc.field, **exc.extra)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"field": _field(e["loc"]), "message": e["msg"], "type": e["type"]} for e in exc.errors()
    ]
    first = errors[0] if errors else {"field": "body", "message": "invalid", "type": ""}
    if first["type"] == "json_invalid":
        return problem(
            400,
            "malformed-body",
            "Malformed body",
            f"the body is not valid JSON: {first['message']}",
        )
    detail = f"{first['field']}: {first['message']}"
    return problem(
        422, "invalid-input", "Invalid input", detail, field=first["field"], errors=errors
    )


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    slug = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
    return problem(exc.status_code, slug, slug.replace("-", " ").capitalize(), str(exc.detail))


async def _database_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DBAPIError)
    if is_unavailable(exc):
        return problem(
            503,
            "store-unavailable",
            "Store unavailable",
            "the database is unavailable; retry shortly",
        )
    if isinstance(exc, IntegrityError):
        return problem(409, "conflict", "Conflict", "the change conflicts with existing data")
    log.exception("database error")
    return problem(500, "internal-error", "Internal error", "an internal error occurred")


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return problem(500, "internal-error", "Internal error", "an internal error occurred")


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(CapstanError, _capstan_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(Exception, _unexpected)
