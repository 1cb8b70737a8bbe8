"""Request events: one row per data-plane request, failed ones included.

The biggest table by far, append-only. The id is the `x-capstan-request-id` the client got, so
an event written twice (a replayed spool) lands once. On PostgreSQL the table is partitioned by
month on `created_at` (the primary key includes it, as partitioning requires), so retention
drops whole partitions and reports scan only the months they need.

Payloads are kept only when the caller's project opts in (`projects.log_payloads`).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, Index, Integer, String, Uuid, text
from sqlalchemy.orm import Mapped, mapped_column

from capstan.store.schema.base import Base
from capstan.store.types import UTCDateTime

NAME = 100
MODEL = 200
ERROR_MESSAGE = 500


class RequestEvent(Base):
    __tablename__ = "request_events"
    __table_args__ = (
        Index("ix_request_events_org_time", "org_id", "created_at"),
        Index("ix_request_events_project_time", "project_id", "created_at"),
        Index("ix_request_events_key_time", "key_id", "created_at"),
        # Only the events an experiment chose a prompt version for: its status reads them.
        Index(
            "ix_request_events_experiment",
            "experiment_id",
            sqlite_where=text("experiment_id IS NOT NULL"),
            postgresql_where=text("experiment_id IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    # When the request arrived (UTC); the partition key on PostgreSQL.
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    org_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    department_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    team_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    project_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    key_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    user_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    # "chat.completions", "embeddings", "messages", "messages.count_tokens"
    route: Mapped[str] = mapped_column(String(40))
    # The model the client asked for (an alias or a deployment); empty when the body was unreadable.
    model: Mapped[str] = mapped_column(String(MODEL))
    deployment: Mapped[str | None] = mapped_column(String(NAME))
    provider: Mapped[str | None] = mapped_column(String(NAME))
    upstream_model: Mapped[str | None] = mapped_column(String(MODEL))
    stream: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # The HTTP status the client got (200 for a stream that failed after its first byte).
    status: Mapped[int] = mapped_column(Integer)
    # None on success; else why: a failure kind ("rate_limited", "timeout", "stream_cut", ...)
    # or the gateway's own error code ("model_not_found", "invalid_api_key", ...).
    error_type: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(String(ERROR_MESSAGE))
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    cached_tokens: Mapped[int | None] = mapped_column(Integer)
    # Parts of prompt_tokens (cache_write) and of completion_tokens (reasoning), where reported.
    cache_write_tokens: Mapped[int | None] = mapped_column(Integer)
    reasoning_tokens: Mapped[int | None] = mapped_column(Integer)
    # Micro-dollars; None when no price was known for what served the call. The total is the
    # exact sum of the buckets, so every report adds up to the micro-dollar.
    cost_micros: Mapped[int | None] = mapped_column(BigInteger)
    cost_input_micros: Mapped[int | None] = mapped_column(BigInteger)
    cost_cache_read_micros: Mapped[int | None] = mapped_column(BigInteger)
    cost_cache_write_micros: Mapped[int | None] = mapped_column(BigInteger)
    cost_output_micros: Mapped[int | None] = mapped_column(BigInteger)
    cost_reasoning_micros: Mapped[int | None] = mapped_column(BigInteger)
    # True when the tokens were counted by Capstan, not reported by the provider.
    cost_estimated: Mapped[bool] = mapped_column(Boolean, default=False)
    latency_ms: Mapped[float] = mapped_column(Float)
    ttft_ms: Mapped[float | None] = mapped_column(Float)
    tags: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    # A hash of the request's leading instructions and first message (never the text): calls
    # sharing it repeat a prompt prefix, which is what provider prompt caching rewards.
    prompt_fingerprint: Mapped[str | None] = mapped_column(String(32))
    # The managed prompt the gateway rendered into the request, and its version; the
    # experiment that chose that version, when one was running.
    prompt_name: Mapped[str | None] = mapped_column(String(NAME))
    prompt_version: Mapped[int | None] = mapped_column(Integer)
    experiment_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    # {"request": ..., "response": ...} only when the project logs payloads.
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON)
