"""`/api/v1/audit`: read, verify and export the chain (admin and analyst)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from capstan.api.auth import authorize, services_of
from capstan.identity.principal import Principal
from capstan.identity.roles import Permission
from capstan.services import Services

router = APIRouter(tags=["audit"])
Svc = Annotated[Services, Depends(services_of)]
Auditor = Annotated[Principal, Depends(authorize(Permission.AUDIT_READ))]


class AuditEntryOut(BaseModel):
    seq: int
    time: datetime
    actor: str
    action: str
    resource_type: str
    resource_id: str
    before_digest: str | None
    after_digest: str | None
    prev_hash: str
    hash: str


class AuditPage(BaseModel):
    items: list[AuditEntryOut]
    next_cursor: int | None


class VerifyOut(BaseModel):
    ok: bool
    checked: int
    head_hash: str
    first_bad_seq: int | None
    reason: str | None


@router.get("/audit", response_model=AuditPage)
def list_audit(
    svc: Svc,
    _who: Auditor,
    since: datetime | None = None,
    actor: Annotated[str | None, Query(max_length=200)] = None,
    resource: Annotated[str | None, Query(max_length=200)] = None,
    cursor: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Any:
    records = svc.audit.query(
        since=since, actor=actor, resource=resource, after_seq=cursor, limit=limit
    )
    next_cursor = records[-1].seq if len(records) == limit else None
    return {"items": [r.as_dict() for r in records], "next_cursor": next_cursor}


@router.get("/audit/verify", response_model=VerifyOut)
def verify_audit(svc: Svc, _who: Auditor) -> VerifyOut:
    result = svc.audit.verify()
    return VerifyOut(
        ok=result.ok,
        checked=result.checked,
        head_hash=result.head_hash,
        first_bad_seq=result.broken.seq if result.broken else None,
        reason=result.broken.reason if result.broken else None,
    )


@router.get("/audit/export")
def export_audit(
    svc: Svc,
    _who: Auditor,
    since: datetime | None = None,
    format: Literal["jsonl", "csv"] = "jsonl",
) -> StreamingResponse:
    media = "application/x-ndjson" if format == "jsonl" else "text/csv"
    return StreamingResponse(svc.audit.export(since=since, fmt=format), media_type=media)
