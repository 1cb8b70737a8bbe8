"""The gateway's configuration: providers (an endpoint and its credential), deployments (a model
on a provider, with its limits) and aliases (the names clients call, routed over deployments).

Names are unique per organization and are how everything refers to everything (files applied with
`capstan apply` carry names, not ids). Only `deployments.provider_id` is a foreign key: alias
targets and fallbacks are JSON lists of names, checked by the service on every write, because a
routing rule is one document that is read, compared and replaced whole.

A provider never holds a key in clear: `credential_ref` is `env:NAME` (read from the gateway's
environment when routing) or `secret:NAME` (a vault secret); `credential_digest` is the SHA-256
of a literal key Capstan stored for it, so re-applying the same file is recognised as no change
without decrypting anything.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from capstan.clock import utcnow
from capstan.store.schema.base import Base, CreatedMixin, IdMixin
from capstan.store.types import UTCDateTime

NAME_LENGTH = 100


class GatewayProvider(IdMixin, CreatedMixin, Base):
    __tablename__ = "providers"
    __table_args__ = (UniqueConstraint("org_id", "name"),)

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id"), index=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    kind: Mapped[str] = mapped_column(String(32))
    # None: the kind's default endpoint, which then follows Capstan's defaults as they change.
    base_url: Mapped[str | None] = mapped_column(String(2000))
    credential_ref: Mapped[str | None] = mapped_column(Text)
    credential_digest: Mapped[str | None] = mapped_column(String(64))
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class GatewayDeployment(IdMixin, CreatedMixin, Base):
    __tablename__ = "deployments"
    __table_args__ = (UniqueConstraint("org_id", "name"),)

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id"), index=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    provider_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("providers.id"), index=True)
    model: Mapped[str] = mapped_column(String(200))
    timeout_s: Mapped[float] = mapped_column(Float)
    max_concurrency: Mapped[int | None] = mapped_column(Integer)
    # Retries of a transient failure (429, 5xx, timeout, connection) on this deployment.
    max_retries: Mapped[int] = mapped_column(Integer, default=2, server_default="2")
    # Seconds a stream may stay silent before it counts as stalled; None: the setting's.
    stream_idle_timeout_s: Mapped[float | None] = mapped_column(Float)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class GatewayAlias(IdMixin, CreatedMixin, Base):
    __tablename__ = "aliases"
    __table_args__ = (
        UniqueConstraint("org_id", "name"),
        CheckConstraint(
            "strategy IN ('weighted', 'least-latency', 'lowest-cost', 'priority')",
            name="known_strategy",
        ),
    )

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id"), index=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    strategy: Mapped[str] = mapped_column(String(20))
    # [{"deployment": name, "weight": int, "priority": int}, ...]
    targets: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    # alias or deployment names, tried in order when every target failed
    fallbacks: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Whether a vendor's content-policy refusal also moves on to the fallbacks.
    fallback_on_content_policy: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
