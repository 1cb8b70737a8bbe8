"""Data-plane errors, typed once and written in the client's dialect.

A `GatewayError` knows its HTTP status and an OpenAI error `type`/`code`; the OpenAI routes
write `{"error": {"message", "type", "param", "code"}}` and `/v1/messages` writes Anthropic's
`{"type": "error", "error": {"type", "message"}}`, so each SDK raises its own exception class
(`AuthenticationError`, `NotFoundError`, `RateLimitError`, …) for the same failure.
"""

from __future__ import annotations

import logging
from typing import Any

from capstan.gateway.dialects.anthropic import anthropic_error
from capstan.gateway.providers.base import FailureKind, TranslationError, UpstreamError

log = logging.getLogger(__name__)

# Upstream failure → (status to the client, OpenAI error type, code).
_UPSTREAM: dict[FailureKind, tuple[int, str, str]] = {
    FailureKind.INVALID_REQUEST: (400, "invalid_request_error", "upstream_invalid_request"),
    # Our credentials for the vendor are wrong: the client's key is fine, so not a 401.
    FailureKind.AUTHENTICATION: (502, "upstream_error", "upstream_authentication_failed"),
    FailureKind.PERMISSION: (502, "upstream_error", "upstream_permission_denied"),
    FailureKind.NOT_FOUND: (404, "invalid_request_error", "model_not_found"),
    FailureKind.CONTEXT_LENGTH: (400, "invalid_request_error", "context_length_exceeded"),
    FailureKind.CONTENT_POLICY: (400, "invalid_request_error", "content_policy_violation"),
    FailureKind.RATE_LIMITED: (429, "rate_limit_error", "upstream_rate_limited"),
    FailureKind.OVERLOADED: (503, "upstream_error", "upstream_overloaded"),
    FailureKind.SERVER: (502, "upstream_error", "upstream_server_error"),
    FailureKind.TIMEOUT: (504, "timeout_error", "upstream_timeout"),
    FailureKind.CONNECTION: (502, "upstream_error", "upstream_unreachable"),
    FailureKind.MALFORMED: (502, "upstream_error", "upstream_malformed_response"),
}


class GatewayError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.retry_after = retry_after
        # Sent with the error (a rate limit's `x-ratelimit-*`).
        self.extra_headers = extra_headers

    @classmethod
    def of(cls, exc: Exception) -> GatewayError:
        """The client-facing error for anything an upstream call raised."""
        if isinstance(exc, GatewayError):
            return exc
        if isinstance(exc, TranslationError):
            return cls(400, exc.message, param=exc.param, code="unsupported_feature")
        if isinstance(exc, UpstreamError):
            status, kind, code = _UPSTREAM[exc.kind]
            message = f"upstream: {exc.message}"
            if exc.kind in (FailureKind.AUTHENTICATION, FailureKind.PERMISSION):
                # Vendors quote the rejected key back ("Incorrect API key provided: sk-…"):
                # never relay their words; the key is the gateway's, not the client's.
                message = "the upstream rejected the gateway's credentials for this provider"
            return cls(status, message, type=kind, code=code, retry_after=exc.retry_after)
        log.error("unexpected error on the data plane", exc_info=exc)
        return cls(500, "internal error", type="server_error", code="internal_error")

    def openai_body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def anthropic_body(self) -> dict[str, Any]:
        return anthropic_error(self.status, None, self.message)

    def headers(self) -> dict[str, str]:
        headers = dict(self.extra_headers) if self.extra_headers else {}
        if self.retry_after is not None:
            headers["retry-after"] = str(max(1, round(self.retry_after)))
        return headers


def invalid(message: str, param: str | None = None) -> GatewayError:
    return GatewayError(400, message, param=param, code="invalid_request")
