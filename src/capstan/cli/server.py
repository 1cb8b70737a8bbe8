"""`capstan init`, `capstan serve` and `capstan demo`."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from capstan.bootstrap import initialize, system_principal
from capstan.cli.output import CliError, console, print_json
from capstan.config import ENV_PREFIX, Settings, load_settings
from capstan.demo import demo_admin_key, seed
from capstan.demo_gateway import configure_demo_gateway, start_simulator
from capstan.gateway.server_protocol import CoalescingHttpToolsProtocol
from capstan.services import Services

Host = Annotated[str | None, typer.Option(help="Address to listen on [default: 127.0.0.1].")]
Port = Annotated[int | None, typer.Option(help="Port [default: 4100].", min=1, max=65535)]


def init(
    organization: Annotated[str, typer.Option(help="Organization name.")] = "default",
    json: Annotated[bool, typer.Option("--json", help='Print {"admin_key": …}.')] = False,
) -> None:
    """Create the home, migrate the database, create the organization and an admin key."""
    settings = load_settings()
    services = Services.build(settings)
    try:
        result = initialize(services, organization)
    finally:
        services.close()
    key = result.admin_key.plaintext if result.admin_key else None
    if json:
        print_json(
            {
                "admin_key": key,
                "organization": result.organization.name,
                "home": str(settings.home.resolve()),
            }
        )
        return
    console.print(f"Capstan home: {settings.home.resolve()}  database: migrated to head")
    if key:
        console.print(f"Admin key (shown once, store it now): [bold]{key}[/bold]")
    else:
        console.print(
            "Already initialised: an admin key exists (create more with `capstan keys create`)."
        )


def _settings_for_server(
    host: str | None,
    port: int | None,
    workers: int | None,
    tls_cert: Path | None,
    tls_key: Path | None,
) -> Settings:
    """Settings with the command's flags applied, exported to the environment so that every
    uvicorn worker process builds the same settings."""
    overrides = {
        "host": host,
        "port": port,
        "workers": workers,
        "tls_cert": tls_cert,
        "tls_key": tls_key,
    }
    for name, value in overrides.items():
        if value is not None:
            os.environ[ENV_PREFIX + name.upper()] = str(value)
    settings = load_settings()
    for path in (settings.tls_cert, settings.tls_key):
        if path is not None and not path.is_file():
            raise CliError(f"TLS file not found: {path}")
    return settings


def _run_server(settings: Settings) -> None:
    uvicorn.run(
        "capstan.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        ssl_certfile=str(settings.tls_cert) if settings.tls_cert else None,
        ssl_keyfile=str(settings.tls_key) if settings.tls_key else None,
        log_level=settings.log_level,
        access_log=False,
        proxy_headers=False,
        server_header=False,  # no software banner for scanners (and one header less per call)
        # SIGTERM: stop accepting, let in-flight requests finish for this long, then the
        # lifespan shutdown flushes the request events (what cannot land stays spooled).
        timeout_graceful_shutdown=math.ceil(settings.drain_timeout_s),
        loop="uvloop",
        http=CoalescingHttpToolsProtocol,  # httptools, the head and body of a response in one write
    )


def _urls(settings: Settings) -> str:
    scheme = "https" if settings.tls_cert else "http"
    base = f"{scheme}://{settings.host}:{settings.port}"
    return f"API {base}/api/v1  ·  docs {base}/api/docs  ·  health {base}/healthz"


def serve(
    host: Host = None,
    port: Port = None,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes [default: 1].", min=1)
    ] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="PEM certificate: serve HTTPS.")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key for --tls-cert.")] = None,
) -> None:
    """Migrate the database and serve the API (and, later, the gateway)."""
    settings = _settings_for_server(host, port, workers, tls_cert, tls_key)
    services = Services.build(settings)
    try:
        result = initialize(services)
    finally:
        services.close()
    if result.admin_key:
        console.print(
            f"Admin key (shown once, store it now): [bold]{result.admin_key.plaintext}[/bold]"
        )
    console.print(_urls(settings))
    _run_server(settings)


def demo(
    host: Host = None,
    port: Port = None,
    sim_port: Annotated[
        int, typer.Option(help="Port of the upstream simulator [default: a free port].", min=0)
    ] = 0,
) -> None:
    """Initialise a home with demo data and a gateway on the upstream simulator (real vendors
    where their keys are in the environment), print a fresh admin key and the URLs, and serve."""
    settings = _settings_for_server(host, port, None, None, None)
    simulator_url = f"http://{settings.host}:{start_simulator(settings.host, sim_port)}"
    services = Services.build(settings)
    try:
        result = initialize(services)
        admin = system_principal(result.organization)
        seed(services, admin)
        vendors = configure_demo_gateway(services, admin, simulator_url)
        key = demo_admin_key(services, admin)
    finally:
        services.close()
    console.print("[bold]Capstan demo[/bold]  (SQLite in " + str(settings.home.resolve()) + ")")
    console.print(f"Admin key: [bold]{key.plaintext}[/bold]")
    console.print(_urls(settings))
    console.print("Gateway: OpenAI-compatible at /v1, Anthropic at /v1/messages; aliases")
    console.print(
        "  chat-default, chat-anthropic, chat-gemini, chat-cohere, chat-bedrock, embed-default"
    )
    for line in vendors:
        console.print("  " + line, markup=False)
    console.print(
        f"Try: curl -H 'Authorization: Bearer {key.plaintext}' "
        f"http://{settings.host}:{settings.port}/api/v1/departments"
    )
    _run_server(settings)
