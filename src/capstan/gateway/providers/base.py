"""The one interface every upstream wire format implements.

The gateway speaks OpenAI Chat Completions internally: a request reaches an adapter as an
OpenAI-shaped body (already validated, `model` replaced by the upstream model id) and leaves it as
an OpenAI-shaped completion or a stream of OpenAI-shaped chunks. Each adapter translates to and
from its vendor's wire format, so adding a vendor is one module and the gateway never branches on
the vendor. Anthropic-dialect clients are translated at the edge (`gateway/dialects/`), except
that an Anthropic client reaching an Anthropic upstream is passed through natively.

Streaming contract: `stream_chat` yields `chat.completion.chunk` dicts; exactly one chunk, the
last, carries `usage` (with `"choices": []`), whatever the client asked; the gateway strips it
when the client did not ask for `stream_options.include_usage`.

Usage contract (OpenAI semantics): `prompt_tokens` counts every input token, cached ones
included; `prompt_tokens_details.cached_tokens` the ones read from a cache;
`prompt_tokens_details.cache_creation_tokens` (an extension) the ones written to it;
`completion_tokens_details.reasoning_tokens` the thinking tokens, where the vendor reports them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from capstan.gateway.upstream_client import UpstreamClient

ChatRequest = dict[str, Any]
ChatCompletion = dict[str, Any]
ChatChunk = dict[str, Any]
EmbeddingRequest = dict[str, Any]
EmbeddingResponse = dict[str, Any]


class WireJSON(dict[str, Any]):
    """A JSON object exactly as the upstream sent it, with those bytes in `raw`: when the client
    speaks the upstream's format, the gateway forwards `raw` instead of encoding the object
    again. Whoever changes the object must make a new dict (a plain one), never mutate this."""

    __slots__ = ("raw",)

    def __init__(self, data: dict[str, Any], raw: bytes) -> None:
        super().__init__(data)
        self.raw = raw


@dataclass(frozen=True, slots=True)
class Upstream:
    """Where one call goes: a deployment resolved against its provider, credentials included.

    `options` carries the few per-kind extras: Azure `api_version`; Bedrock `region`,
    `aws_access_key_id`, `aws_secret_access_key`, `aws_session_token`; any kind may set
    `extra_headers` as a JSON object in text."""

    provider: str
    kind: str
    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)
    options: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float = 60.0


class FailureKind(StrEnum):
    """Why an upstream call failed, in the terms the gateway maps to statuses and retries on."""

    INVALID_REQUEST = "invalid_request"  # 400/422: the request is wrong; never retried
    AUTHENTICATION = "authentication"  # 401: our credentials for the vendor are wrong
    PERMISSION = "permission"  # 403
    NOT_FOUND = "not_found"  # 404: unknown model on the vendor side
    CONTEXT_LENGTH = "context_length"  # the prompt does not fit the model's window
    CONTENT_POLICY = "content_policy"  # refused by the vendor's safety system
    RATE_LIMITED = "rate_limited"  # 429
    OVERLOADED = "overloaded"  # 529 / 503: vendor-side capacity
    SERVER = "server"  # other 5xx
    TIMEOUT = "timeout"  # no answer within the deadline
    CONNECTION = "connection"  # could not connect, or the connection dropped
    MALFORMED = "malformed"  # the vendor answered something we cannot parse


class UpstreamError(Exception):
    """A failed upstream call. `message` is safe to show a client: adapters build it from the
    vendor's error message, never from request headers, so credentials cannot leak through it."""

    def __init__(
        self,
        kind: FailureKind,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.retry_after = retry_after


class TranslationError(Exception):
    """The request uses a feature the target wire format cannot express: a 400 naming it."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class Provider(Protocol):
    """One wire format. Implementations hold no per-call state and may be shared by all calls."""

    async def chat(
        self, http: UpstreamClient, upstream: Upstream, request: ChatRequest
    ) -> ChatCompletion: ...

    def stream_chat(
        self, http: UpstreamClient, upstream: Upstream, request: ChatRequest
    ) -> AsyncIterator[ChatChunk]: ...

    async def embed(
        self, http: UpstreamClient, upstream: Upstream, request: EmbeddingRequest
    ) -> EmbeddingResponse: ...
