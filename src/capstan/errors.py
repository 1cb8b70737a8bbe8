"""Errors that cross the API boundary, typed once and mapped once.

Each carries an HTTP status and a stable slug; `/api` turns them into problem+json
(`type` = `urn:capstan:problem:<slug>`), the CLI into one line on stderr and a non-zero exit.
"""

from __future__ import annotations

from typing import Any, ClassVar


class CapstanError(Exception):
    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal-error"
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str, *, field: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.extra = extra

    @property
    def type_uri(self) -> str:
        return f"urn:capstan:problem:{self.slug}"


class InvalidInput(CapstanError):
    status = 422
    slug = "invalid-input"
    title = "Invalid input"


class NotFound(CapstanError):
    status = 404
    slug = "not-found"
    title = "Not found"


class Conflict(CapstanError):
    status = 409
    slug = "conflict"
    title = "Conflict"


class Unauthenticated(CapstanError):
    status = 401
    slug = "unauthenticated"
    title = "Unauthenticated"


class Forbidden(CapstanError):
    status = 403
    slug = "forbidden"
    title = "Forbidden"


class StoreUnavailable(CapstanError):
    status = 503
    slug = "store-unavailable"
    title = "Store unavailable"


class ConfigError(CapstanError):
    """A bad setting; raised at start, before anything is served."""

    slug = "config-error"
    title = "Configuration error"
