"""Validate JSON against OpenAI's published OpenAPI document, so that the simulator and the
gateway are checked against what OpenAI says its wire format is, not against our reading of it.

    from tests.openai_spec import validate_openai
    validate_openai("CreateChatCompletionResponse", response.json())

The document (3 MB of YAML, about a second to parse) is read once per process, and its component
schemas are kept as JSON under the pytest cache so that later runs and xdist workers skip the YAML.
`WireRecorder` (and `AsyncWireRecorder`) is a transport for the official SDKs that keeps the raw
bytes of every response, so that a test drives the SDK and still validates what went over the wire:

    recorder = WireRecorder()
    client = openai.OpenAI(..., http_client=httpx2.Client(transport=recorder))
    ...
    validate_openai_exchange(recorder.last, "CreateChatCompletionStreamResponse")

`nullable: true`, which OpenAPI 3.1 no longer defines but the document still uses, is rewritten
into `anyOf: [..., {"type": "null"}]` so that `"finish_reason": null` validates.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import httpx2
import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

REPO = Path(__file__).resolve().parents[1]
SPEC_NAME = "openai-openapi.yaml"
WORKPLACE_SPECS = Path("/work/shared/specs")
CACHE_DIR = REPO / ".pytest_cache" / "capstan-specs"
ROOT_URI = "urn:openai-openapi"
# The schemas of a chat completion and of one chunk of its stream.
COMPLETION = "CreateChatCompletionResponse"
CHUNK = "CreateChatCompletionStreamResponse"


def spec_path() -> Path:
    """Where the specs live: `$CAPSTAN_TEST_SPECS`, else `shared/specs` in or beside the repo,
    else the workplace's shared folder (so a clone made elsewhere, e.g. in /tmp, finds them)."""
    candidates = [
        REPO / "shared" / "specs",
        REPO.parent / "shared" / "specs",
        WORKPLACE_SPECS,
    ]
    if os.environ.get("CAPSTAN_TEST_SPECS"):
        candidates.insert(0, Path(os.environ["CAPSTAN_TEST_SPECS"]))
    for folder in candidates:
        if (folder / SPEC_NAME).is_file():
            return folder / SPEC_NAME
    raise FileNotFoundError(
        f"{SPEC_NAME} not found in {', '.join(map(str, candidates))}; set CAPSTAN_TEST_SPECS"
    )


def _without_nullable(node: Any) -> Any:
    """The schema with every `nullable: true` turned into an explicit null alternative."""
    if isinstance(node, list):
        return [_without_nullable(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: _without_nullable(value) for key, value in node.items()}
    if converted.pop("nullable", False) is True:
        return {"anyOf": [converted, {"type": "null"}]}
    return converted


def _load_schemas(path: Path) -> dict[str, Any]:
    stat = path.stat()
    key = hashlib.sha256(f"{path}:{stat.st_size}:{stat.st_mtime_ns}:1".encode()).hexdigest()
    cached = CACHE_DIR / f"openai-schemas-{key[:16]}.json"
    if cached.is_file():
        loaded: dict[str, Any] = json.loads(cached.read_text())
        return loaded
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with path.open() as handle:
        document = yaml.load(handle, Loader=loader)  # noqa: S506 - a safe loader
    # YAML reads dates in examples as `date`; JSON keeps them as the strings they were written as.
    encoded = json.dumps(_without_nullable(document["components"]["schemas"]), default=str)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(encoded)
    partial.replace(cached)  # atomic: concurrent workers never read half a file
    schemas: dict[str, Any] = json.loads(encoded)
    return schemas


@lru_cache(maxsize=1)
def _registry() -> Registry[Any]:
    document = {"components": {"schemas": _load_schemas(spec_path())}}
    resource: Resource[Any] = Resource.from_contents(document, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(ROOT_URI, resource)
    return registry


@cache
def openai_validator(schema_name: str) -> Draft202012Validator:
    """A validator for one component schema (`CreateChatCompletionResponse`, ...), resolving
    the document's `#/components/schemas/...` references."""
    registry = _registry()
    schemas = registry.contents(ROOT_URI)["components"]["schemas"]
    if schema_name not in schemas:
        raise KeyError(f"no component schema {schema_name!r} in {SPEC_NAME}")
    schema = {"$ref": f"{ROOT_URI}#/components/schemas/{schema_name}"}
    return Draft202012Validator(schema, registry=registry)


def openai_errors(schema_name: str, instance: Any) -> list[str]:
    """Every way `instance` breaks the schema, as readable lines (empty when it is valid)."""
    found = openai_validator(schema_name).iter_errors(instance)
    return [_describe(error) for error in sorted(found, key=lambda e: list(e.path))]


def _describe(error: ValidationError) -> str:
    where = "/".join(map(str, error.absolute_path)) or "(root)"
    return f"{where}: {error.message}"


def validate_openai(schema_name: str, instance: Any) -> None:
    """Fail (AssertionError) unless `instance` is a valid `schema_name` per OpenAI's spec."""
    problems = openai_errors(schema_name, instance)
    assert not problems, f"not a valid {schema_name}:\n" + "\n".join(problems)


@dataclass
class Exchange:
    """One response as it crossed the wire (its body grows while a stream is read)."""

    status: int
    content_type: str
    body: bytearray = field(default_factory=bytearray)

    def json(self) -> Any:
        return json.loads(bytes(self.body))

    def events(self) -> list[Any]:
        """A stream's `data:` payloads, JSON-decoded, without the closing `[DONE]`."""
        payloads = []
        for line in bytes(self.body).decode().splitlines():
            if line.startswith("data: ") and line != "data: [DONE]":
                payloads.append(json.loads(line.removeprefix("data: ")))
        return payloads


class _Tee(httpx2.SyncByteStream):
    def __init__(self, inner: httpx2.SyncByteStream, exchange: Exchange) -> None:
        self.inner = inner
        self.exchange = exchange

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.inner:
            self.exchange.body.extend(chunk)
            yield chunk

    def close(self) -> None:
        self.inner.close()


class _AsyncTee(httpx2.AsyncByteStream):
    def __init__(self, inner: httpx2.AsyncByteStream, exchange: Exchange) -> None:
        self.inner = inner
        self.exchange = exchange

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.inner:
            self.exchange.body.extend(chunk)
            yield chunk

    async def aclose(self) -> None:
        await self.inner.aclose()


class WireRecorder(httpx2.BaseTransport):
    """An HTTP transport for the official SDKs (`http_client=httpx2.Client(transport=...)`)
    that keeps every response's raw bytes, so a test can validate what the server sent rather
    than what the SDK made of it."""

    def __init__(self) -> None:
        self.inner = httpx2.HTTPTransport()
        self.exchanges: list[Exchange] = []

    @property
    def last(self) -> Exchange:
        return self.exchanges[-1]

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        response = self.inner.handle_request(request)
        exchange = Exchange(response.status_code, response.headers.get("content-type", ""))
        self.exchanges.append(exchange)
        assert isinstance(response.stream, httpx2.SyncByteStream)
        return httpx2.Response(
            response.status_code,
            headers=response.headers,
            stream=_Tee(response.stream, exchange),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self.inner.close()


class AsyncWireRecorder(httpx2.AsyncBaseTransport):
    """`WireRecorder` for async clients."""

    def __init__(self) -> None:
        self.inner = httpx2.AsyncHTTPTransport()
        self.exchanges: list[Exchange] = []

    @property
    def last(self) -> Exchange:
        return self.exchanges[-1]

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self.inner.handle_async_request(request)
        exchange = Exchange(response.status_code, response.headers.get("content-type", ""))
        self.exchanges.append(exchange)
        assert isinstance(response.stream, httpx2.AsyncByteStream)
        return httpx2.Response(
            response.status_code,
            headers=response.headers,
            stream=_AsyncTee(response.stream, exchange),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self.inner.aclose()


def validate_openai_exchange(exchange: Exchange, schema_name: str) -> None:
    """Validate a recorded response: the body, or each event of a stream, against the spec.
    For a stream, `schema_name` is the chunk schema (`CreateChatCompletionStreamResponse`)."""
    if exchange.content_type.startswith("text/event-stream"):
        chunks = exchange.events()
        assert chunks, "the stream carried no events"
        for chunk in chunks:
            validate_openai(schema_name, chunk)
    else:
        validate_openai(schema_name, exchange.json())
