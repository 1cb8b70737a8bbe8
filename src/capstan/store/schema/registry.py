"""The model registry: registered models, their immutable versions and the aliases that point
at them.

A version's artifact lives in the artifact store (a folder or any fsspec URL), addressed by
model, version and file name, and is recorded here with its SHA-256: every load checks it, and
a mismatch refuses to serve. Lineage, the signature and the reference data profile are JSON
documents written once with the version.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from capstan.clock import utcnow
from capstan.store.schema.base import Base, CreatedMixin, IdMixin
from capstan.store.types import UTCDateTime

NAME = 100
ACTOR = 200
STATUSES = ("registered", "staging", "production", "archived", "retired")
RISK_TIERS = ("low", "medium", "high", "critical")
FLAVORS = ("onnx", "sklearn", "xgboost", "lightgbm")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class RegisteredModel(IdMixin, CreatedMixin, Base):
    __tablename__ = "registered_models"
    __table_args__ = (
        UniqueConstraint("org_id", "name"),
        CheckConstraint(f"risk_tier IS NULL OR {_one_of('risk_tier', RISK_TIERS)}", name="risk"),
    )

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id"), index=True)
    name: Mapped[str] = mapped_column(String(NAME))
    project_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("projects.id"), index=True)
    description: Mapped[str | None] = mapped_column(String(2000))
    intended_use: Mapped[str | None] = mapped_column(Text)
    owner: Mapped[str | None] = mapped_column(String(ACTOR))
    risk_tier: Mapped[str | None] = mapped_column(String(16))
    created_by: Mapped[str] = mapped_column(String(ACTOR))


class ModelVersion(IdMixin, CreatedMixin, Base):
    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("model_id", "version"),
        CheckConstraint("version >= 1", name="version_positive"),
        CheckConstraint(_one_of("flavor", FLAVORS), name="flavor"),
        CheckConstraint(_one_of("status", STATUSES), name="status"),
    )

    model_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("registered_models.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    flavor: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="registered")
    artifact_uri: Mapped[str] = mapped_column(String(1000))
    artifact_filename: Mapped[str] = mapped_column(String(200))
    artifact_sha256: Mapped[str] = mapped_column(String(64))
    artifact_size: Mapped[int] = mapped_column(BigInteger)
    # `Signature.as_json()`: OIP-typed inputs and outputs (and the feature columns).
    signature: Mapped[dict[str, Any]] = mapped_column(JSON)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    metrics: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    tags: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    # {train_data_uri, train_data_sha256, code_commit, parent_version}
    lineage: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The reference data profile computed from a training sample (`registry/profile.py`).
    profile: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    # Types a skops artifact may load besides scikit-learn's, numpy's and scipy's.
    trusted_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    description: Mapped[str | None] = mapped_column(String(2000))
    created_by: Mapped[str] = mapped_column(String(ACTOR))


class ModelAlias(IdMixin, Base):
    __tablename__ = "model_aliases"
    __table_args__ = (UniqueConstraint("model_id", "name"),)

    model_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("registered_models.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(ACTOR))
