"""`/api/v1/experiments`: A/B tests between prompt versions: start, list, status (with the
significance tests and a recommended winner), stop (optionally promoting a variant)."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, status
from pydantic import BaseModel, Field

from capstan.api.auth import authorize, services_of
from capstan.identity.principal import Principal
from capstan.identity.roles import Permission
from capstan.prompts.experiments import DEFAULT_MIN_SAMPLES, ExperimentRequest
from capstan.services import Services
from capstan.store.schema import PromptExperiment

router = APIRouter(tags=["prompts"])
Svc = Annotated[Services, Depends(services_of)]
Reader = Annotated[Principal, Depends(authorize(Permission.PROMPTS_READ))]
Writer = Annotated[Principal, Depends(authorize(Permission.PROMPTS_WRITE))]


class VariantIn(BaseModel):
    version: int = Field(ge=1)
    weight: int = Field(default=1, ge=1, le=10_000)


class ExperimentIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    prompt: str
    label: str = Field(default="production", description="the label whose traffic is split")
    variants: list[VariantIn] = Field(
        min_length=2, max_length=5, description="the first is the control"
    )
    sticky_by: str = Field(
        default="user", description="user, key or header:NAME: who always gets the same variant"
    )
    min_samples: int = Field(default=DEFAULT_MIN_SAMPLES, ge=1, le=1_000_000)


class StopIn(BaseModel):
    promote: int | None = Field(
        default=None, ge=1, description="move the label to this variant's version"
    )


class ExperimentOut(BaseModel):
    id: uuid.UUID
    name: str
    prompt: str
    label: str
    variants: list[dict[str, int]]
    sticky_by: str
    min_samples: int
    status: str
    started_by: str
    created_at: datetime
    stopped_at: datetime | None
    promoted_version: int | None


class StatusOut(ExperimentOut):
    summaries: list[dict[str, Any]]
    comparisons: list[dict[str, Any]]
    winner: int | None
    loser: int | None
    reason: str
    enough_data: bool


def _view(row: PromptExperiment, prompt: str) -> ExperimentOut:
    return ExperimentOut(
        id=row.id,
        name=row.name,
        prompt=prompt,
        label=row.label,
        variants=row.variants,
        sticky_by=row.sticky_by,
        min_samples=row.min_samples,
        status=row.status,
        started_by=row.started_by,
        created_at=row.created_at,
        stopped_at=row.stopped_at,
        promoted_version=row.promoted_version,
    )


@router.post("/experiments", response_model=ExperimentOut, status_code=status.HTTP_201_CREATED)
def start_experiment(body: ExperimentIn, services: Svc, principal: Writer) -> ExperimentOut:
    """Split the label's traffic between the variants, from the gateways' next request."""
    request = ExperimentRequest(
        name=body.name,
        prompt=body.prompt,
        variants=[(v.version, v.weight) for v in body.variants],
        label=body.label,
        sticky_by=body.sticky_by,
        min_samples=body.min_samples,
    )
    return _view(services.experiments.start(principal, request), body.prompt)


@router.get("/experiments", response_model=list[ExperimentOut])
def list_experiments(services: Svc, principal: Reader) -> list[ExperimentOut]:
    return [_view(row, prompt) for row, prompt in services.experiments.list(principal)]


@router.get("/experiments/{ref}", response_model=StatusOut)
def experiment_status(ref: str, services: Svc, principal: Reader) -> StatusOut:
    """Per variant: requests, errors, latency, cost, tokens and feedback; per metric, the test
    fit for it; and the recommended winner, once a difference is significant."""
    found = services.experiments.status(principal, ref)
    verdict = found.verdict
    return StatusOut(
        **_view(found.experiment, found.prompt).model_dump(),
        summaries=[asdict(s) for s in verdict.summaries],
        comparisons=[asdict(c) for c in verdict.comparisons],
        winner=verdict.winner,
        loser=verdict.loser,
        reason=verdict.reason,
        enough_data=verdict.enough_data,
    )


@router.post("/experiments/{ref}/stop", response_model=ExperimentOut)
def stop_experiment(ref: str, body: StopIn, services: Svc, principal: Writer) -> ExperimentOut:
    """Stop splitting traffic; with `promote`, the label moves to that version."""
    row, prompt = services.experiments.stop(principal, ref, promote=body.promote)
    return _view(row, prompt)
