"""What one data-plane request leaves behind: its request event.

A `CallRecord` is opened when a request arrives and filled in as it goes (who asked, for what,
who served it, how many attempts, tokens, time to first token, how it ended). It becomes one
event, whose id is the `x-capstan-request-id` the client got, written to the event pipeline
before the response's last byte is sent: a plain response records before it is returned, a
stream just before its final frame (or when it ends early, however it ends).
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from capstan.clock import utcnow
from capstan.finops.costing import Cost, Usage
from capstan.gateway.errors import GatewayError
from capstan.gateway.providers.base import UpstreamError
from capstan.identity.principal import Principal

if TYPE_CHECKING:
    from capstan.finops.guard import Hold
    from capstan.gateway.attempts import Served

MAX_TAGS = 20
MAX_TAG_KEY = 64
MAX_TAG_VALUE = 256
MESSAGE_LIMIT = 500
# The client went away before the response ended (nginx's code for it; no HTTP status fits).
CLIENT_CLOSED = 499


def parse_tags(header: str | None, metadata: Any) -> dict[str, str]:
    """Tags from `x-capstan-tags: k=v,k2=v2` and the body's `metadata` object (string values),
    the header winning; bounded, so a client cannot bloat the event table through them."""
    if not header and not metadata:
        return {}
    tags: dict[str, str] = {}
    if isinstance(metadata, dict):
        for key, value in metadata.items():
            if isinstance(value, str | int | float | bool):
                tags[str(key)[:MAX_TAG_KEY]] = str(value)[:MAX_TAG_VALUE]
    if header:
        for pair in header.split(","):
            key, sep, value = pair.partition("=")
            if sep and key.strip():
                tags[key.strip()[:MAX_TAG_KEY]] = value.strip()[:MAX_TAG_VALUE]
    return dict(list(tags.items())[:MAX_TAGS])


class CallRecord:
    """The request event being assembled; `event()` freezes it into the pipeline's dict."""

    __slots__ = (
        "attempts",
        "cache_write_tokens",
        "cached_tokens",
        "completion_tokens",
        "cost",
        "created_at",
        "deployment",
        "downgraded_to",
        "error_message",
        "error_type",
        "experiment_id",
        "first_byte_at",
        "hold",
        "id",
        "model",
        "org_id",
        "principal",
        "prompt_fingerprint",
        "prompt_name",
        "prompt_tokens",
        "prompt_version",
        "provider",
        "reasoning_tokens",
        "request_body",
        "response_body",
        "response_text",
        "route",
        "started",
        "status",
        "stream",
        "tags",
        "upstream_model",
    )

    def __init__(self, route: str, request_id: str, org_id: uuid.UUID | None) -> None:
        self.id = request_id
        # The installation's organization: the event's owner even when no key was accepted.
        self.org_id = org_id
        self.route = route
        self.started = time.perf_counter()
        self.created_at: datetime = utcnow()
        self.principal: Principal | None = None
        self.model = ""
        self.stream = False
        self.deployment: str | None = None
        self.provider: str | None = None
        self.upstream_model: str | None = None
        self.attempts = 0
        self.status = 200
        self.error_type: str | None = None
        self.error_message: str | None = None
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None
        self.cached_tokens: int | None = None
        self.cache_write_tokens: int | None = None
        self.reasoning_tokens: int | None = None
        self.cost: Cost | None = None
        # The budget reservation to settle when the request ends (None: no budget applies).
        self.hold: Hold | None = None
        self.downgraded_to: str | None = None
        self.first_byte_at: float | None = None
        self.tags: dict[str, str] = {}
        self.prompt_fingerprint: str | None = None
        # The managed prompt rendered into the request, and the experiment that chose it.
        self.prompt_name: str | None = None
        self.prompt_version: int | None = None
        self.experiment_id: uuid.UUID | None = None
        self.request_body: Any = None
        self.response_body: Any = None
        self.response_text: list[str] = []

    @property
    def keeps_payloads(self) -> bool:
        return self.principal is not None and self.principal.log_payloads

    def answered(self, response: Any) -> None:
        """The whole response, for the event's payload when the project logs payloads, and
        for counting its tokens if the provider reported none (a reference, not a copy)."""
        self.response_body = response

    def streamed(self, text: str) -> None:
        """A piece of a streamed answer, kept like `answered` (joined once, at the end)."""
        self.response_text.append(text)

    def output_text(self) -> str:
        return "".join(self.response_text)

    def served_by(self, served: Served) -> None:
        deployment = served.deployment
        self.deployment = deployment.name
        self.provider = deployment.provider
        self.upstream_model = deployment.model
        self.attempts = served.attempts

    def first_byte(self) -> None:
        if self.first_byte_at is None:
            self.first_byte_at = time.perf_counter()

    def failed(self, exc: Exception, error: GatewayError, *, status: int | None = None) -> None:
        """Note a failure: the status the client got and why, in the terms a search needs
        (the upstream failure kind, or the gateway's error code)."""
        self.status = error.status if status is None else status
        if isinstance(exc, UpstreamError):
            self.error_type = exc.kind.value
        else:
            self.error_type = error.code or error.type
        self.error_message = error.message[:MESSAGE_LIMIT]

    def openai_usage(self, usage: Any) -> None:
        """Tokens from an OpenAI-shaped `usage` (chat or embeddings)."""
        if not isinstance(usage, dict):
            return
        self.prompt_tokens = _int(usage.get("prompt_tokens"))
        self.completion_tokens = _int(usage.get("completion_tokens"))
        details = usage.get("prompt_tokens_details")
        if isinstance(details, dict):
            self.cached_tokens = _int(details.get("cached_tokens"))
        details = usage.get("completion_tokens_details")
        if isinstance(details, dict):
            self.reasoning_tokens = _int(details.get("reasoning_tokens"))

    def anthropic_usage(self, usage: Any) -> None:
        """Tokens from an Anthropic `usage`; its `input_tokens` leaves out cache reads and
        writes, which the event counts as input like OpenAI does. A stream reports usage twice
        (message_start, then message_delta): later values complete earlier ones."""
        if not isinstance(usage, dict):
            return
        if "input_tokens" in usage:
            cache_read = _int(usage.get("cache_read_input_tokens")) or 0
            cache_write = _int(usage.get("cache_creation_input_tokens")) or 0
            self.prompt_tokens = (_int(usage.get("input_tokens")) or 0) + cache_read + cache_write
            self.cached_tokens = cache_read
            self.cache_write_tokens = cache_write
        if "output_tokens" in usage:
            self.completion_tokens = _int(usage.get("output_tokens"))

    def usage(self) -> Usage | None:
        """The tokens the provider reported, as costing reads them; None when it reported none."""
        if self.prompt_tokens is None and self.completion_tokens is None:
            return None
        return Usage(
            prompt_tokens=self.prompt_tokens or 0,
            completion_tokens=self.completion_tokens or 0,
            cached_tokens=self.cached_tokens or 0,
            cache_write_tokens=self.cache_write_tokens or 0,
            reasoning_tokens=self.reasoning_tokens or 0,
        )

    def event(self) -> dict[str, Any]:
        now = time.perf_counter()
        cost = self.cost
        principal = self.principal
        scope = principal.scope if principal is not None else None
        payload = None
        if self.keeps_payloads:
            response = self.response_body
            if self.response_text:
                response = {"text": "".join(self.response_text)}
            payload = {"request": self.request_body, "response": response}
        return {
            "id": self.id,
            "created_at": self.created_at,
            "org_id": scope.org_id if scope is not None else self.org_id,
            "department_id": scope.department_id if scope is not None else None,
            "team_id": scope.team_id if scope is not None else None,
            "project_id": scope.project_id if scope is not None else None,
            "key_id": principal.key_id if principal is not None else None,
            "user_id": principal.user_id if principal is not None else None,
            "route": self.route,
            "model": self.model[:200],
            "deployment": self.deployment,
            "provider": self.provider,
            "upstream_model": self.upstream_model,
            "stream": self.stream,
            "attempts": self.attempts,
            "status": self.status,
            "error_type": self.error_type,
            "error_message": self.error_message,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cached_tokens": self.cached_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "prompt_fingerprint": self.prompt_fingerprint,
            "prompt_name": self.prompt_name,
            "prompt_version": self.prompt_version,
            "experiment_id": self.experiment_id,
            "cost_micros": cost.total if cost is not None else None,
            "cost_input_micros": cost.input + cost.other if cost is not None else None,
            "cost_cache_read_micros": cost.cache_read if cost is not None else None,
            "cost_cache_write_micros": cost.cache_write if cost is not None else None,
            "cost_output_micros": cost.output if cost is not None else None,
            "cost_reasoning_micros": cost.reasoning if cost is not None else None,
            "cost_estimated": cost.estimated if cost is not None else False,
            "latency_ms": round((now - self.started) * 1000, 3),
            "ttft_ms": (
                round((self.first_byte_at - self.started) * 1000, 3)
                if self.first_byte_at is not None
                else None
            ),
            "tags": self.tags,
            "payload": payload,
        }


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
