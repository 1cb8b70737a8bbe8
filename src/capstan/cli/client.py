"""One way for every CLI command to reach the control API, remote or in-process.

With `CAPSTAN_URL` and `CAPSTAN_API_KEY` set, commands call that server over HTTP. Otherwise they
run the very same FastAPI app in this process against the local store, as a local administrator
(whoever can read `$CAPSTAN_HOME` holds the master key and the database anyway). Either way the
request goes through the same validation, authorization, audit and error mapping, which is what
makes the results the same.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import httpx

from capstan.cli.in_process import in_process_client
from capstan.cli.output import CliError
from capstan.config import load_settings
from capstan.identity.principal import Principal
from capstan.identity.roles import Role
from capstan.identity.scope import ScopePath
from capstan.services import Services
from capstan.store import migrate


class ControlClient(Protocol):
    def request(
        self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None
    ) -> Any: ...

    def stream(self, path: str, *, params: dict[str, Any] | None = None) -> Iterator[str]: ...

    def upload(self, path: str, content: bytes, headers: dict[str, str]) -> Any: ...


def local_principal(services: Services) -> Principal:
    org = services.directory.organization()
    return Principal(actor=f"local:{getpass.getuser()}", role=Role.ADMIN, scope=ScopePath(org.id))


class _HttpControlClient:
    def __init__(self, http: httpx.Client) -> None:
        self.http = http

    def request(
        self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None
    ) -> Any:
        try:
            response = self.http.request(method, "/api/v1" + path, json=json, params=_clean(params))
        except httpx.HTTPError as exc:
            raise CliError(f"cannot reach Capstan at {self.http.base_url}: {exc}") from exc
        _raise_for_problem(response)
        return None if response.status_code == 204 else response.json()

    def upload(self, path: str, content: bytes, headers: dict[str, str]) -> Any:
        """Raw bytes as the body (an artifact), not JSON."""
        try:
            response = self.http.post("/api/v1" + path, content=content, headers=headers)
        except httpx.HTTPError as exc:
            raise CliError(f"cannot reach Capstan at {self.http.base_url}: {exc}") from exc
        _raise_for_problem(response)
        return response.json()

    def stream(self, path: str, *, params: dict[str, Any] | None = None) -> Iterator[str]:
        try:
            with self.http.stream("GET", "/api/v1" + path, params=_clean(params)) as response:
                if response.status_code >= 400:
                    response.read()
                    _raise_for_problem(response)
                yield from response.iter_text()
        except httpx.HTTPError as exc:
            raise CliError(f"cannot reach Capstan at {self.http.base_url}: {exc}") from exc


def _clean(params: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if params is None else {k: v for k, v in params.items() if v is not None}


def _raise_for_problem(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        body = response.json()
        message = body.get("detail") or body.get("title") or response.reason_phrase
    except ValueError:
        message = response.text.strip() or response.reason_phrase
    raise CliError(f"{message} (HTTP {response.status_code})")


@contextmanager
def control_client() -> Iterator[ControlClient]:
    url, key = os.environ.get("CAPSTAN_URL"), os.environ.get("CAPSTAN_API_KEY")
    if url and key:
        verify: bool | str = os.environ.get("CAPSTAN_CA_BUNDLE") or True
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=url, headers=headers, timeout=30.0, verify=verify) as http:
            yield _HttpControlClient(http)
        return
    if url and not key:
        raise CliError("CAPSTAN_URL is set but CAPSTAN_API_KEY is not")
    with local_app() as http:
        yield _HttpControlClient(http)


@contextmanager
def local_services() -> Iterator[Services]:
    """Services on the local store, which must have been initialised with `capstan init`."""
    settings = load_settings()
    if settings.database_url is None and not (settings.home / "capstan.db").exists():
        raise CliError(f"no Capstan home at {settings.home}: run `capstan init` first")
    services = Services.build(settings)
    try:
        if not migrate.is_current(services.store):
            raise CliError("the database schema is not current: run `capstan init` to migrate")
        yield services
    finally:
        services.close()


@contextmanager
def local_app() -> Iterator[httpx.Client]:
    from capstan.app import build_app  # the FastAPI app is only needed in local mode

    with local_services() as services:
        app = build_app(
            services.settings,
            services=services,
            local_principal=local_principal(services),
            data_plane=False,
        )
        with in_process_client(app) as http:
            yield http
