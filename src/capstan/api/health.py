"""`/healthz`: the process is up. `/readyz`: the database answers and the schema is current."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from capstan.api.auth import services_of
from capstan.store import migrate

router = APIRouter(include_in_schema=False)


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    store = services_of(request).store
    checks: dict[str, Any] = {}
    try:
        store.ping()
        checks["database"] = "ok"
        checks["migrations"] = "current" if migrate.is_current(store) else "behind"
    except Exception as exc:  # report, never raise: this endpoint exists to say what is wrong
        checks["database"] = f"unavailable: {type(exc).__name__}"
    ready = checks.get("database") == "ok" and checks.get("migrations") == "current"
    gateway = getattr(request.app.state, "gateway", None)
    if gateway is not None and gateway.started:
        # Waiting events are not a reason to be unready (they land when the database is
        # back); dropped ones are a loss, reported here and on /metrics.
        checks["events"] = {
            "waiting": gateway.events.waiting,
            "dropped": gateway.events.dropped,
        }
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status_code=200 if ready else 503,
    )
