"""What every adapter does over HTTP: post JSON, read SSE, turn a vendor failure into
`UpstreamError` with the vendor's own message (never our request headers)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from typing import Any

import orjson

from capstan.gateway.providers.base import FailureKind, Upstream, UpstreamError, WireJSON
from capstan.gateway.upstream_client import TransportError, UpstreamClient, UpstreamResponse

_CONTEXT_HINTS = (
    "context length",
    "context_length",
    "context window",
    "too many tokens",
    "prompt is too long",
    "input is too long",
    "maximum context",
)
_POLICY_HINTS = ("content policy", "content_policy", "safety", "content_filter")


def failure_kind(status: int, message: str = "") -> FailureKind:
    """The failure kind of an HTTP status, refined by the vendor's message where it tells more."""
    lowered = message.lower()
    if status in (400, 413, 422):
        if any(hint in lowered for hint in _CONTEXT_HINTS):
            return FailureKind.CONTEXT_LENGTH
        if any(hint in lowered for hint in _POLICY_HINTS):
            return FailureKind.CONTENT_POLICY
        return FailureKind.INVALID_REQUEST
    return {
        401: FailureKind.AUTHENTICATION,
        403: FailureKind.PERMISSION,
        404: FailureKind.NOT_FOUND,
        408: FailureKind.TIMEOUT,
        424: FailureKind.SERVER,
        429: FailureKind.RATE_LIMITED,
        503: FailureKind.OVERLOADED,
        529: FailureKind.OVERLOADED,
    }.get(status, FailureKind.SERVER if status >= 500 else FailureKind.INVALID_REQUEST)


def extra_headers(upstream: Upstream) -> dict[str, str]:
    """The deployment's `extra_headers` option (a JSON object of strings), for every adapter."""
    extra = upstream.options.get("extra_headers")
    if not extra:
        return {}
    try:
        parsed = orjson.loads(extra)
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict) or not all(isinstance(v, str) for v in parsed.values()):
        raise UpstreamError(
            FailureKind.INVALID_REQUEST,
            "the deployment's extra_headers option is not a JSON object of strings",
        )
    return {str(k): v for k, v in parsed.items()}


def vendor_message(body: bytes) -> str:
    """The human message inside any vendor's error body (OpenAI, Anthropic, Gemini, Cohere,
    Bedrock shapes), or a short excerpt of the body."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:300].decode("utf-8", "replace").strip() or "no error message"
    if isinstance(data, list) and data:  # Gemini sometimes wraps the error in a list
        data = data[0]
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        if isinstance(error, str):
            return error
        for key in ("message", "Message", "detail"):
            if isinstance(data.get(key), str):
                return str(data[key])
    return body[:300].decode("utf-8", "replace")


def retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            return float(value) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None  # HTTP-date form: treat as unknown


def upstream_error(status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError:
    """The `UpstreamError` for a vendor's error response: its message, the kind its status and
    message tell, and the wait its `retry-after` headers ask for."""
    message = vendor_message(body)
    return UpstreamError(
        failure_kind(status, message),
        message,
        status=status,
        retry_after=retry_after(headers),
    )


# Reads one error response (status, body, headers) as an `UpstreamError`; an adapter whose
# vendor says more in its error body than the generic reading sees passes its own.
ErrorReader = Callable[[int, bytes, Mapping[str, str]], UpstreamError]


@asynccontextmanager
async def upstream_post(
    http: UpstreamClient,
    url: str,
    *,
    headers: Mapping[str, str],
    body: bytes,
    timeout_s: float,
    read_error: ErrorReader = upstream_error,
) -> AsyncIterator[UpstreamResponse]:
    """POST to the vendor; failures before a 2xx become `UpstreamError` (by `read_error`), and
    so do transport failures while the body is read. The response is closed on the way out
    (its connection kept for reuse when the body was read to its end)."""
    response = await _send(http, url, headers, body, timeout_s)
    try:
        if response.status >= 400:
            raise read_error(response.status, await response.read(), response.headers)
        yield response
    except (TimeoutError, TransportError) as exc:
        raise _transport_failure(exc) from exc
    finally:
        response.close()


async def post_json(
    http: UpstreamClient,
    url: str,
    *,
    headers: Mapping[str, str],
    payload: Any,
    timeout_s: float,
    read_error: ErrorReader = upstream_error,
) -> dict[str, Any]:
    """POST `payload` as JSON (`headers` carry the content type) and return the JSON object
    the vendor answered, with its bytes (`WireJSON`). What `upstream_post` does, without its
    context-manager frames: most model calls come through here."""
    response = await _send(http, url, headers, orjson.dumps(payload), timeout_s)
    try:
        raw = await response.read()
    except (TimeoutError, TransportError) as exc:
        raise _transport_failure(exc) from exc
    finally:
        response.close()
    if response.status >= 400:
        raise read_error(response.status, raw, response.headers)
    return WireJSON(json_object(raw), raw)


async def _send(
    http: UpstreamClient, url: str, headers: Mapping[str, str], body: bytes, timeout_s: float
) -> UpstreamResponse:
    try:
        return await http.post(url, headers=headers, body=body, timeout_s=timeout_s)
    except (TimeoutError, TransportError) as exc:
        raise _transport_failure(exc) from exc
    except ValueError as exc:  # a URL or header that cannot go on the wire
        raise UpstreamError(FailureKind.INVALID_REQUEST, str(exc)) from exc


def _transport_failure(exc: TimeoutError | TransportError) -> UpstreamError:
    """Never the exception's text: it names hosts and ports of the vendor's network."""
    if isinstance(exc, TimeoutError):
        return UpstreamError(FailureKind.TIMEOUT, "the upstream did not answer in time")
    return UpstreamError(
        FailureKind.CONNECTION, f"could not reach the upstream: {type(exc).__name__}"
    )


def json_object(
    raw: bytes | str, malformed: str = "the upstream answered invalid JSON"
) -> dict[str, Any]:
    """`raw` decoded, when it is a JSON object; anything else is a MALFORMED `UpstreamError`
    saying `malformed`."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError(FailureKind.MALFORMED, malformed) from exc
    if not isinstance(data, dict):
        raise UpstreamError(FailureKind.MALFORMED, malformed)
    return data


async def read_rest(response: UpstreamResponse) -> None:
    """Read what is left of a stream after its last event, so the connection goes back to the
    pool instead of being closed; nothing is lost if that fails, so a failure is ignored."""
    with suppress(TransportError, TimeoutError):
        await response.read()


async def sse_events(response: UpstreamResponse) -> AsyncIterator[tuple[str | None, str]]:
    """Server-sent events as (event name or None, data), per the WHATWG framing rules."""
    event: str | None = None
    data: list[str] = []
    async for raw_line in response.lines():
        line = raw_line.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = None, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
    if data:
        yield event, "\n".join(data)
