"""Builds the ASGI app: services, background tasks, routers, error mapping."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Depends, FastAPI

from capstan import __version__
from capstan.api import health
from capstan.api.auth import LOCAL_PRINCIPAL, current_principal
from capstan.api.problems import install_problem_handlers
from capstan.config import Settings, load_settings
from capstan.events import api as events_api
from capstan.finops import api as finops_api
from capstan.finops import ratelimits_api, recommendations_api, reports_api
from capstan.gateway import anthropic_api, metrics, models_api, openai_api
from capstan.gateway.config import api as gateway_config_api
from capstan.gateway.front import DataPlaneFirst
from capstan.gateway.runtime import Gateway
from capstan.governance.audit import api as audit_api
from capstan.governance.secrets import api as secrets_api
from capstan.identity import api as identity_api
from capstan.identity.config_version import ConfigWatcher
from capstan.identity.principal import Principal
from capstan.monitor import feedback_api
from capstan.prompts import api as prompts_api
from capstan.prompts import experiments_api
from capstan.registry import api as registry_api
from capstan.services import Services
from capstan.serving import endpoints as serving_endpoints
from capstan.tuning import freeze_startup_objects, tune_malloc


def build_app(
    settings: Settings,
    *,
    services: Services | None = None,
    local_principal: Principal | None = None,
    data_plane: bool = True,
    tune_process: bool = False,
) -> FastAPI:
    """The whole HTTP surface. `local_principal` is for the CLI's in-process mode, where whoever
    can read `$CAPSTAN_HOME` already holds every secret and acts as a local administrator; that
    mode also passes `data_plane=False`, since a one-shot command serves no model calls and
    need not open an upstream pool or load the routing table."""
    services = services or Services.build(settings)

    gateway = Gateway(services)

    def config_changed() -> None:
        services.authenticator.clear()
        if data_plane:
            gateway.config_changed()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        watcher = ConfigWatcher(services.versions, config_changed, settings.config_poll_interval)
        loop = asyncio.get_running_loop()

        def committed_here() -> None:
            loop.call_soon_threadsafe(config_changed)

        stop_listening = services.versions.listen(committed_here)
        if data_plane:
            await gateway.start()
        await watcher.start()
        if tune_process:
            freeze_startup_objects()
        try:
            yield
        finally:
            stop_listening()
            await watcher.stop()
            await gateway.stop()
            services.close()

    app = FastAPI(
        title="Capstan control API",
        version=__version__,
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.gateway = gateway
    setattr(app.state, LOCAL_PRINCIPAL, local_principal)
    install_problem_handlers(app)

    api = APIRouter(prefix="/api/v1", dependencies=[Depends(current_principal)])
    api.include_router(identity_api.router)
    api.include_router(audit_api.router)
    api.include_router(secrets_api.router)
    api.include_router(gateway_config_api.router)
    api.include_router(events_api.router)
    api.include_router(finops_api.router)
    api.include_router(reports_api.router)
    api.include_router(ratelimits_api.router)
    api.include_router(recommendations_api.router)
    api.include_router(prompts_api.router)
    api.include_router(experiments_api.router)
    api.include_router(feedback_api.router)
    api.include_router(registry_api.router)
    app.include_router(api)
    app.include_router(health.router)
    if data_plane:
        # First, so that even through FastAPI a model call does not try every /api route.
        app.router.routes[:0] = DATA_PLANE_ROUTES
    return app


DATA_PLANE_ROUTES = [
    *openai_api.routes,
    *anthropic_api.routes,
    *models_api.routes,
    *serving_endpoints.routes,
    *metrics.routes,
]


def build_server_app(settings: Settings, **options: Any) -> DataPlaneFirst:
    """What a server runs: `build_app` behind the data-plane fast path (see gateway/front.py)."""
    return DataPlaneFirst(build_app(settings, **options), DATA_PLANE_ROUTES)


def create_app() -> DataPlaneFirst:
    """Factory for `uvicorn --factory` (each worker builds its own app from the environment),
    with the process tuned for a long-running server (see tuning.py)."""
    tune_malloc()
    return build_server_app(load_settings(), tune_process=True)
