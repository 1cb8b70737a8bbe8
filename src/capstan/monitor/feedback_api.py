"""`POST /api/v1/feedback`: one item or a batch, each linked to a request or prediction id.

Service keys may send it (applications collect their users' thumbs); a retry with the same
feedback `id` is answered with the first recording, not stored twice.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Response, status
from pydantic import BaseModel, Field

from capstan.api.auth import authorize, services_of
from capstan.identity.principal import Principal
from capstan.identity.roles import Permission
from capstan.monitor.feedback import MAX_BATCH, FeedbackItem
from capstan.services import Services

router = APIRouter(tags=["monitoring"])
Svc = Annotated[Services, Depends(services_of)]
Sender = Annotated[Principal, Depends(authorize(Permission.FEEDBACK_WRITE))]


class FeedbackIn(BaseModel):
    request_id: uuid.UUID = Field(
        description="the `x-capstan-request-id` of an LLM call, or a prediction id"
    )
    score: float | None = Field(default=None, description="a number: a grade, a rating, 0/1")
    label: str | None = Field(
        default=None,
        description="a word: `positive`/`negative` (thumbs), a class, the true outcome",
    )
    comment: str | None = None
    id: uuid.UUID | None = Field(
        default=None, description="your id for this feedback: sending it again changes nothing"
    )


class FeedbackBatchIn(BaseModel):
    items: list[FeedbackIn] = Field(min_length=1, max_length=MAX_BATCH)


class FeedbackOut(BaseModel):
    id: uuid.UUID
    request_id: uuid.UUID
    created: bool


class FeedbackBatchOut(BaseModel):
    items: list[FeedbackOut]


@router.post("/feedback", status_code=status.HTTP_201_CREATED)
def send_feedback(
    body: FeedbackIn | FeedbackBatchIn, response: Response, services: Svc, principal: Sender
) -> FeedbackOut | FeedbackBatchOut:
    """201 when anything new was recorded; 200 when every item had been recorded before."""
    items = body.items if isinstance(body, FeedbackBatchIn) else [body]
    recorded = services.feedback.record(
        principal,
        [
            FeedbackItem(
                target_id=item.request_id,
                score=item.score,
                label=item.label,
                comment=item.comment,
                id=item.id,
            )
            for item in items
        ],
    )
    if not any(r.created for r in recorded):
        response.status_code = status.HTTP_200_OK
    views = [FeedbackOut(id=r.id, request_id=r.target_id, created=r.created) for r in recorded]
    return FeedbackBatchOut(items=views) if isinstance(body, FeedbackBatchIn) else views[0]
