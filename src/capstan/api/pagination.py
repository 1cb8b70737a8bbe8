"""Keyset pagination over UUIDv7 ids: `?limit=&cursor=`; the next cursor is the last id."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Annotated, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

Item = TypeVar("Item", bound=BaseModel)
Row = TypeVar("Row")
DEFAULT_LIMIT = 50
MAX_LIMIT = 500


class Page(BaseModel, Generic[Item]):
    items: list[Item]
    next_cursor: str | None


class PageParams(BaseModel):
    limit: int
    cursor: uuid.UUID | None


def page_params(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[uuid.UUID | None, Query()] = None,
) -> PageParams:
    return PageParams(limit=limit, cursor=cursor)


def page_of(rows: Sequence[Row], params: PageParams, view: Callable[[Row], Item]) -> Page[Item]:
    items = [view(row) for row in rows]
    last = rows[-1] if len(rows) == params.limit else None
    return Page[Item](items=items, next_cursor=str(last.id) if last is not None else None)  # type: ignore[attr-defined]
