"""What every vendor module of the simulator shares: reading the request, logging it without
credentials, SSE framing, and pacing a stream as the model's faults say."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

import orjson
from starlette.requests import Request

from capstan.testing.simulator.state import SimulatorState

CREDENTIAL_HEADERS = frozenset(
    {"authorization", "x-api-key", "x-goog-api-key", "api-key", "x-amz-security-token"}
)


class StreamCut(ConnectionAbortedError):
    """Raised inside a streaming body to drop the connection mid-stream, without the terminating
    chunk: the client sees what it sees when a real upstream dies half-way through an answer."""


async def read_json(request: Request, state: SimulatorState) -> Any:
    """The body as JSON (None when it is not JSON), logged for `/_sim/requests`."""
    raw = await request.body()
    try:
        body = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        body = None
    headers = {k: v for k, v in request.headers.items() if k not in CREDENTIAL_HEADERS}
    state.record(request.url.path, headers, body)
    return body


def sse(data: Any, event: str | None = None) -> bytes:
    """One server-sent event; `data` is JSON-encoded unless it is already bytes or str."""
    if isinstance(data, bytes):
        payload = data
    elif isinstance(data, str):
        payload = data.encode()
    else:
        payload = orjson.dumps(data)
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + payload + b"\n\n"


async def paced_stream(
    state: SimulatorState, model: str, frames: Iterable[tuple[bool, bytes]]
) -> AsyncIterator[bytes]:
    """The body of a streamed answer, from `(paced, frame)` pairs read one at a time: a paced
    frame (a delta) waits as the model's faults say (time to first token, tokens per second) and
    may be where the stream is cut dead; the others go out at once."""
    sent = 0
    finished = False
    try:
        for paced, frame in frames:
            if paced:
                if not await state.pace(model, sent):
                    finished = True  # cut on purpose, not abandoned by the client
                    raise StreamCut(f"stream cut after {sent} deltas")
                sent += 1
            yield frame
        finished = True
    finally:
        if not finished:  # the client (the gateway) closed the connection mid-stream
            state.streams_abandoned += 1


def presented_credential(request: Request, *headers: str) -> str | None:
    for name in headers:
        value = request.headers.get(name)
        if value:
            return value.removeprefix("Bearer ").removeprefix("bearer ").strip() or None
    return request.query_params.get("key")


def rejected(credential: str | None) -> bool:
    """Missing keys, and keys starting with `bad`, are refused (to test auth-error mapping)."""
    return credential is None or credential.startswith("bad")
