"""What every data-plane route does first and last: authenticate the caller for model calls,
read a bounded JSON body, find the deployments to try within the request's deadline, write JSON
or SSE with orjson (no pydantic on the hot path) with errors in the route's dialect, and leave
one request event behind, written before the response's last byte goes out."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from capstan.api.auth import presented_key
from capstan.errors import CapstanError
from capstan.finops.budget_rules import Caller
from capstan.finops.fingerprints import prompt_fingerprint
from capstan.finops.metering import reservation
from capstan.finops.pauses import paused_for
from capstan.gateway.attempts import Attempts, Deadline
from capstan.gateway.errors import GatewayError, invalid
from capstan.gateway.providers.base import FailureKind, UpstreamError, WireJSON
from capstan.gateway.recording import CLIENT_CLOSED, CallRecord, parse_tags
from capstan.identity.principal import Principal
from capstan.identity.roles import Permission
from capstan.ids import new_id_text
from capstan.prompts.serving import PROMPT_HEADER, Apply, use_prompt
from capstan.prompts.serving import VERSION_HEADER as PROMPT_VERSION_HEADER
from capstan.services import Services

if TYPE_CHECKING:
    from capstan.gateway.attempts import Served
    from capstan.gateway.config.snapshot import Deployment
    from capstan.gateway.runtime import Gateway

T = TypeVar("T")
TIMEOUT_HEADER = "x-capstan-timeout"
TAGS_HEADER = "x-capstan-tags"
# Set when a `downgrade` budget at its limit sent the call to its cheaper alias (the value).
DOWNGRADE_HEADER = "x-capstan-budget-downgrade"
MAX_TIMEOUT_S = 3600.0
# What the request event says of a stream that failed after its first byte.
_STREAM_FAILURES = {
    FailureKind.CONNECTION: "stream_cut",
    FailureKind.TIMEOUT: "stream_stalled",
    FailureKind.MALFORMED: "stream_malformed",
}


async def read_json_body(request: Request, limit: int) -> tuple[dict[str, Any], int]:
    """The body as a JSON object, and its size in bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise GatewayError(413, f"the body exceeds the {limit}-byte limit", code="body_too_large")
    # Straight from `receive`: Starlette's stream() is an async generator per request.
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise GatewayError(400, "the client disconnected", code="client_closed")
        chunk = message.get("body", b"")
        more = message.get("more_body", False)
        size += len(chunk)
        if size > limit:
            raise GatewayError(
                413, f"the body exceeds the {limit}-byte limit", code="body_too_large"
            )
        chunks.append(chunk)
    try:
        body = orjson.loads(chunks[0] if len(chunks) == 1 else b"".join(chunks))
    except orjson.JSONDecodeError as exc:
        raise GatewayError(400, f"the body is not valid JSON: {exc}", code="invalid_json") from exc
    if not isinstance(body, dict):
        raise GatewayError(400, "the body must be a JSON object", code="invalid_json")
    return body, size


async def authenticate(services: Services, request: Request) -> Principal:
    """The caller, allowed to invoke models; 401/403 as `GatewayError` for either dialect."""
    try:
        key = presented_key(request)
        authenticator = services.authenticator
        principal = authenticator.authenticate_cached(key)
        if principal is None:
            principal = await authenticator.authenticate_async(key)
        principal.require(Permission.MODELS_INVOKE)
    except CapstanError as exc:
        kind = "authentication_error" if exc.status == 401 else "permission_error"
        code = "invalid_api_key" if exc.status == 401 else "permission_denied"
        raise GatewayError(exc.status, exc.detail, type=kind, code=code) from exc
    return principal


class JSONBytes(Response):
    """A JSON response whose headers are built directly: Starlette's general constructor
    (header normalisation, charset handling) is measurable on a path taken by every call."""

    def __init__(self, body: bytes, status: int, headers: dict[str, str] | None) -> None:
        self.status_code = status
        self.body = body
        self.background = None
        raw = [(b"content-length", str(len(body)).encode()), _JSON_TYPE]
        if headers:
            raw.extend((k.lower().encode(), v.encode()) for k, v in headers.items())
        self.raw_headers = raw


_JSON_TYPE = (b"content-type", b"application/json")


def json_response(
    data: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """`data` as JSON; an upstream's own object (`WireJSON`) goes out as the bytes it came in."""
    body = data.raw if isinstance(data, WireJSON) else orjson.dumps(data)
    return JSONBytes(body, status, headers)


@dataclass(frozen=True, slots=True)
class Admitted:
    """A request that passed the edge: who asked, for what, and how its attempts will run."""

    gateway: Gateway
    body: dict[str, Any]
    model: str
    targets: list[Deployment]
    attempts: Attempts


def request_deadline(request: Request, targets: list[Deployment]) -> Deadline:
    """`x-capstan-timeout` (seconds) when the client sets one, else the first target's timeout."""
    header = request.headers.get(TIMEOUT_HEADER)
    if header is None:
        return Deadline.after(targets[0].upstream.timeout_s)
    try:
        seconds = float(header)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= MAX_TIMEOUT_S:
        raise invalid(f"{TIMEOUT_HEADER} must be a number of seconds in (0, {MAX_TIMEOUT_S:g}]")
    return Deadline.after(seconds)


async def admit(
    request: Request,
    record: CallRecord,
    validate: Callable[[dict[str, Any]], str],
    *,
    budgeted: bool = True,
    prompts: Apply | None = None,
) -> Admitted:
    """Authenticate, read the body, render the managed prompt it names (`prompts` puts it into
    the route's request shape), validate it (`validate` returns the model asked for), and
    resolve the model to the deployments to try, in order, under the request's deadline; a
    `budgeted` call (any that may cost money) first holds its worst case on its budgets."""
    gateway = gateway_of(request)
    principal = await authenticate(gateway.services, request)
    record.principal = principal
    body, size = await read_json_body(request, gateway.settings.max_body_bytes)
    if prompts is not None:
        header = request.headers.get(PROMPT_HEADER)
        if header is not None or "prompt" in body:
            await use_prompt(gateway, body, header, request.headers, principal, record, prompts)
    model = validate(body)
    record.prompt_fingerprint = prompt_fingerprint(body, size)
    record.model = model
    record.stream = bool(body.get("stream"))
    record.tags = parse_tags(request.headers.get(TAGS_HEADER), body.get("metadata"))
    # For the payload when the project logs payloads, and for counting tokens the provider
    # did not report (a reference: nothing is copied, nothing logged otherwise).
    record.request_body = body
    targets, alias = await gateway.targets(model)
    table = gateway.table
    if table is not None and table.paused:
        notice = paused_for(table.paused, principal.scope, principal.key_id)
        if notice is not None:
            raise GatewayError(403, notice.message(), type="permission_error", code="scope_paused")
    if budgeted and table is not None and (table.budgets or table.rate_limits):
        caller = Caller(principal.scope, principal.key_id, principal.user_id, record.tags)
        rules = table.budgets.for_caller(caller) if table.budgets else ()
        caps = table.rate_limits.for_call(caller, model) if table.rate_limits else ()
        if rules or caps:
            # Hold the call's worst case on its budgets and rate limits (429 at a `block`
            # limit); inline on the memory store, which needs no I/O. Callers no budget or
            # rate limit covers skip the estimate.
            at, guard = record.created_at, gateway.guard
            worst, tokens = reservation(table.prices, targets, body, at)
            if guard.inline is not None:
                hold = guard.admit_inline(rules, worst, record.id, at, caps, tokens)
            else:
                hold = await guard.admit(rules, worst, record.id, at, caps, tokens)
            record.hold = hold
            if hold is not None and hold.downgraded_by is not None:
                # A `downgrade` budget at its limit: the call goes to its cheaper alias.
                cheaper = hold.downgraded_by.downgrade_to
                if cheaper:
                    record.downgraded_to = cheaper
                    targets, alias = await gateway.targets(cheaper)
    attempts = Attempts(
        gateway,
        targets,
        request_deadline(request, targets),
        record,
        content_policy_fallback=alias is not None and alias.fallback_on_content_policy,
    )
    return Admitted(gateway, body, model, targets, attempts)


def event_stream(
    gateway: Gateway,
    first: T,
    rest: AsyncGenerator[T, None],
    record: CallRecord,
    *,
    encode: Callable[[T], bytes | None],
    error_event: Callable[[GatewayError], bytes],
    end: bytes,
    headers: dict[str, str],
    is_last: Callable[[T], bool] = lambda _item: False,
) -> StreamingResponse:
    """An SSE response from a stream whose first item already arrived. `encode` frames an item
    (None skips it), and may note usage on `record`; a failure after the first byte becomes
    `error_event`, in the client's dialect, and ends the stream. The request event is written
    before the final frame (`end`, or the item `is_last` recognises), or when the stream ends
    any other way; the upstream stream is closed whatever happens, so a client that leaves
    cancels the upstream call."""

    async def frames() -> AsyncIterator[bytes]:
        finished = False

        def finish() -> None:
            nonlocal finished
            if not finished:
                finished = True
                gateway.finish(record)

        try:
            item: T | None = first
            while item is not None:
                frame = encode(item)
                if frame is not None:
                    record.first_byte()
                    if is_last(item):
                        finish()
                    yield frame
                item = await anext(rest, None)
            finish()
        except Exception as exc:
            error = GatewayError.of(exc)
            record.failed(exc, error, status=200)
            if isinstance(exc, UpstreamError):
                record.error_type = _STREAM_FAILURES.get(exc.kind, record.error_type)
            finish()
            yield error_event(error)
            return
        finally:
            await rest.aclose()
            if not finished:  # the client left (cancelled, or the generator closed early)
                record.status, record.error_type = CLIENT_CLOSED, "client_closed"
                finish()
        if end:
            yield end

    return StreamingResponse(
        frames(),
        media_type="text/event-stream",
        headers={**headers, "cache-control": "no-cache"},
    )


Handler = Callable[[Request, CallRecord], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


def gateway_of(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


def served_headers(record: CallRecord, served: Served) -> dict[str, str]:
    """Headers of a served call; also notes on the record who served it."""
    record.served_by(served)
    headers = {
        "x-capstan-request-id": record.id,
        "x-capstan-deployment": served.deployment.name,
        "x-capstan-attempts": str(served.attempts),
    }
    if record.downgraded_to is not None:
        headers[DOWNGRADE_HEADER] = record.downgraded_to
    if record.prompt_version is not None:
        headers[PROMPT_VERSION_HEADER] = str(record.prompt_version)
    hold = record.hold
    if hold is not None and hold.headers:
        headers.update(hold.headers)
    return headers


def dialect_endpoint(
    route: str | None, handler: Handler, error_body: Callable[[GatewayError], dict[str, Any]]
) -> Endpoint:
    """Open the request's record (its id is the request id the client gets), write whatever
    the handler raises in the route's dialect, so each SDK raises its own exception class, and
    spool the request event of a plain response before the response leaves (a stream spools
    its own, see `event_stream`). A `route` of None records nothing (not a model call)."""

    async def endpoint(request: Request) -> Response:
        gateway = gateway_of(request)
        record = CallRecord(route or "", new_id_text(), gateway.org_id)
        try:
            response = await handler(request, record)
        except Exception as exc:
            error = GatewayError.of(exc)
            if route is not None:
                record.failed(exc, error)
                gateway.finish(record)
            headers = {"x-capstan-request-id": record.id, **error.headers()}
            return json_response(error_body(error), status=error.status, headers=headers)
        if route is not None and not isinstance(response, StreamingResponse):
            gateway.finish(record)
        return response

    return endpoint
