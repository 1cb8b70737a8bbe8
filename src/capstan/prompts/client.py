"""The prompt helper applications use: `capstan.prompts.get("support-reply")`.

A prompt is fetched from a Capstan server (`GET /api/v1/prompts/{name}`) and kept for `ttl_s`
seconds, during which `get` sends nothing. After that it revalidates with the version's ETag,
which costs the server a 304 when nothing moved. When the server cannot be reached (a network
error, a timeout, a 429 or a 5xx) `get` returns the last good copy marked `stale=True` and logs
a warning, so an outage of Capstan does not take the application down with it. A 404 is never
answered from the cache: the prompt or label was removed on purpose.

Rendering runs locally, in the same sandbox and with the same variable checks as the gateway.

Imported inside applications, so it stays light: httpx, the standard library and the
template modules, nothing of the server.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from capstan.prompts.render import PromptTemplate, compile_prompt, render
from capstan.prompts.variables import VariableSpec, bind, parse_variables

__all__ = [
    "DEFAULT_LABEL",
    "Prompt",
    "PromptClient",
    "PromptClientError",
    "PromptNotFound",
    "PromptUnavailable",
    "get",
]

DEFAULT_LABEL = "production"
URL_ENV = "CAPSTAN_URL"
API_KEY_ENV = "CAPSTAN_API_KEY"
CA_BUNDLE_ENV = "CAPSTAN_CA_BUNDLE"

log = logging.getLogger(__name__)


class PromptClientError(Exception):
    """The server refused the request (401, 403, 400, …): a problem to fix, not to wait out."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class PromptNotFound(PromptClientError, LookupError):
    """No such prompt, label or version (404); never answered from the cache."""


class PromptUnavailable(PromptClientError):
    """The server could not be reached or failed, and there is no earlier copy to fall back on."""


@dataclass(frozen=True)
class Prompt:
    """One version of a prompt, as the server sent it."""

    name: str
    version: int
    labels: tuple[str, ...]
    model: str | None
    params: dict[str, Any]
    variables: dict[str, Any]  # the declared schema, as stored
    messages: list[dict[str, str]] | None
    text: str | None
    etag: str
    fetched_at: float  # time.monotonic() when the server last confirmed this copy
    stale: bool = False  # served from the last good copy because the server was unreachable

    def render(self, /, **variables: Any) -> list[dict[str, str]] | str:
        """The messages (`[{"role", "content"}]`) or the text, with these variables.

        Raises `PromptInputError` for a missing, unknown or mistyped variable and
        `PromptRenderError` when the template fails, the errors the gateway answers 400 with.
        """
        template, specs = self._compiled
        return render(template, bind(specs, variables))

    @cached_property
    def _compiled(self) -> tuple[PromptTemplate, tuple[VariableSpec, ...]]:
        # cached_property writes the instance's __dict__, which a frozen dataclass allows.
        return (
            compile_prompt(messages=self.messages, text=self.text),
            parse_variables(self.variables),
        )


def _copy(prompt: Prompt, **changes: Any) -> Prompt:
    """`replace`, keeping the compiled template when there is one (versions never change)."""
    copied = replace(prompt, **changes)
    if "_compiled" in prompt.__dict__:
        copied.__dict__["_compiled"] = prompt.__dict__["_compiled"]
    return copied


@dataclass
class _Entry:
    prompt: Prompt
    checked_at: float  # the last attempt, successful or not: the TTL counts from here


@dataclass
class _Cache:
    entries: dict[tuple[str, str | None, int | None], _Entry] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class PromptClient:
    """Fetches prompts from one Capstan server and caches them for `ttl_s` seconds.

    `url` and `api_key` default to `CAPSTAN_URL` and `CAPSTAN_API_KEY`. Pass `http` to use
    your own `httpx.Client` (it is then yours to close). Safe to share between threads.
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        ttl_s: float = 60.0,
        timeout_s: float = 5.0,
        http: httpx.Client | None = None,
    ) -> None:
        url = url or os.environ.get(URL_ENV)
        api_key = api_key or os.environ.get(API_KEY_ENV)
        if not url:
            raise ValueError(f"no Capstan URL: pass url= or set {URL_ENV}")
        if not api_key:
            raise ValueError(f"no Capstan API key: pass api_key= or set {API_KEY_ENV}")
        if ttl_s < 0:
            raise ValueError("ttl_s is a number of seconds, 0 or more")
        self.url = url.rstrip("/")
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self._headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}
        self._owns_http = http is None
        if http is None:
            verify: bool | str = os.environ.get(CA_BUNDLE_ENV) or True
            http = httpx.Client(timeout=timeout_s, verify=verify)
        self._http = http
        self._cache = _Cache()

    def get(
        self,
        name: str,
        *,
        label: str | None = None,
        version: int | None = None,
        ttl_s: float | None = None,
    ) -> Prompt:
        """The version a label points at (`production` when neither label nor version is
        given; `latest` for the newest), or a version by number.

        Raises `PromptNotFound` (404), `PromptUnavailable` (unreachable, and nothing cached),
        or `PromptClientError` (any other refusal, with the server's explanation).
        """
        if label is not None and version is not None:
            raise ValueError("ask for a label or a version, not both")
        if version is None and label is None:
            label = DEFAULT_LABEL
        ttl = self.ttl_s if ttl_s is None else ttl_s
        key = (name, label, version)
        with self._cache.lock:
            entry = self._cache.entries.get(key)
        if entry is not None and time.monotonic() - entry.checked_at < ttl:
            return entry.prompt
        cached = entry.prompt if entry is not None else None
        try:
            prompt = self._fetch(name, label, version, cached)
        except PromptNotFound:
            with self._cache.lock:  # gone on purpose: the old copy must not come back
                self._cache.entries.pop(key, None)
            raise
        with self._cache.lock:
            self._cache.entries[key] = _Entry(prompt, time.monotonic())
        return prompt

    def _fetch(
        self, name: str, label: str | None, version: int | None, cached: Prompt | None
    ) -> Prompt:
        what = _describe(name, label, version)
        params: dict[str, str | int] = {"label": label} if label is not None else {}
        if version is not None:
            params["version"] = version
        headers = dict(self._headers)
        if cached is not None and cached.etag:
            headers["If-None-Match"] = cached.etag
        try:
            response = self._http.get(
                f"{self.url}/api/v1/prompts/{quote(name, safe='')}",
                params=params,
                headers=headers,
                timeout=self.timeout_s,
            )
        except httpx.TransportError as exc:  # timeouts included
            reason = f"{self.url} could not be reached ({type(exc).__name__}: {exc})"
            return _fall_back(what, reason, cached)
        status = response.status_code
        if status == 304 and cached is not None:
            return _copy(cached, fetched_at=time.monotonic(), stale=False)
        if status == 200:
            try:
                return _parse(response, time.monotonic())
            except (ValueError, KeyError, TypeError) as exc:
                return _fall_back(
                    what, f"{self.url} sent a body that is not a prompt: {exc}", cached
                )
        if status == 404:
            raise PromptNotFound(f"{what}: {_detail(response)}", status=status)
        if status == 429 or status >= 500:
            return _fall_back(what, f"{self.url} answered {status}: {_detail(response)}", cached)
        raise PromptClientError(f"{what}: {_detail(response)} (HTTP {status})", status=status)

    def close(self) -> None:
        """Close the HTTP client this object made (one passed in as `http` stays open)."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> PromptClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _describe(name: str, label: str | None, version: int | None) -> str:
    return f"prompt {name!r} " + (
        f"version {version}" if version is not None else f"label {label!r}"
    )


def _fall_back(what: str, reason: str, cached: Prompt | None) -> Prompt:
    if cached is None:
        raise PromptUnavailable(f"{what}: {reason}, and there is no earlier copy")
    log.warning("serving the last good copy of %s (version %d): %s", what, cached.version, reason)
    return cached if cached.stale else _copy(cached, stale=True)


def _parse(response: httpx.Response, now: float) -> Prompt:
    body = response.json()
    if not isinstance(body, Mapping):
        raise TypeError("not a JSON object")
    return Prompt(
        name=str(body["name"]),
        version=int(body["version"]),
        labels=tuple(body.get("labels") or ()),
        model=body.get("model"),
        params=dict(body.get("params") or {}),
        variables=dict(body.get("variables") or {}),
        messages=body.get("messages"),
        text=body.get("text"),
        etag=response.headers.get("etag", ""),
        fetched_at=now,
    )


def _detail(response: httpx.Response) -> str:
    """The problem+json `detail`, else the body's first line, else the reason phrase."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200] or response.reason_phrase
    if isinstance(body, Mapping):
        found = body.get("detail") or body.get("title")
        if isinstance(found, str) and found:
            return found
    return response.reason_phrase


_defaults: dict[tuple[str, str], PromptClient] = {}
_defaults_lock = threading.Lock()


def default_client() -> PromptClient:
    """The client for the current `CAPSTAN_URL` and `CAPSTAN_API_KEY`, made on first use."""
    url, api_key = os.environ.get(URL_ENV), os.environ.get(API_KEY_ENV)
    if not url:
        raise ValueError(f"no Capstan URL: set {URL_ENV}, or use PromptClient(url=...)")
    if not api_key:
        raise ValueError(f"no Capstan API key: set {API_KEY_ENV}, or use PromptClient(api_key=...)")
    with _defaults_lock:
        client = _defaults.get((url, api_key))
        if client is None:
            client = _defaults[(url, api_key)] = PromptClient(url, api_key)
        return client


def close_default_clients() -> None:
    """Close and forget the clients `get` made (they are made again on the next call)."""
    with _defaults_lock:
        clients = list(_defaults.values())
        _defaults.clear()
    for client in clients:
        client.close()


def get(
    name: str,
    *,
    label: str | None = None,
    version: int | None = None,
    ttl_s: float = 60.0,
) -> Prompt:
    """`PromptClient.get` on a shared client for `CAPSTAN_URL` and `CAPSTAN_API_KEY`."""
    return default_client().get(name, label=label, version=version, ttl_s=ttl_s)
