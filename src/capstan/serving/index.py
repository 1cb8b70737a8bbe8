"""The registry models the gateway serves, in memory: each model's versions (what it needs to
load and check them, not their profiles), aliases and latest version.

Part of the routing snapshot, reloaded whenever the config version moves (every registration,
alias move and status change bumps it), so resolving `credit-risk@champion` on a request reads
no database, and a moved alias is served from the next request.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from sqlalchemy import select
from sqlalchemy.orm import Session

from capstan.registry.signature import Signature
from capstan.store.schema import ModelAlias, ModelVersion, RegisteredModel

# A retired version is gone from serving; every other status may be called by number.
SERVED_STATUSES = frozenset({"registered", "staging", "production", "archived"})


@dataclass(frozen=True, slots=True)
class ServableVersion:
    model_id: uuid.UUID
    name: str
    version: int
    flavor: str
    status: str
    artifact_uri: str
    artifact_filename: str
    artifact_sha256: str
    signature: Signature
    trusted_types: tuple[str, ...]
    project_id: uuid.UUID | None

    @property
    def key(self) -> tuple[uuid.UUID, int]:
        return (self.model_id, self.version)


@dataclass(frozen=True, slots=True)
class ServableModel:
    id: uuid.UUID
    name: str
    latest: int
    aliases: Mapping[str, int]
    versions: Mapping[int, ServableVersion]

    def resolve(self, ref: str | None) -> ServableVersion | None:
        """A version by number, by alias, or the newest servable one (`ref` None)."""
        if ref is None:
            number: int | None = max(self.versions, default=None)
        elif ref.isdigit():
            number = int(ref)
        else:
            number = self.aliases.get(ref)
        return self.versions.get(number) if number is not None else None


@dataclass(frozen=True)
class ModelIndex:
    models: Mapping[str, ServableModel] = field(default_factory=lambda: MappingProxyType({}))


def load_model_index(session: Session, org_id: uuid.UUID) -> ModelIndex:
    models = session.execute(
        select(RegisteredModel.id, RegisteredModel.name, RegisteredModel.project_id).where(
            RegisteredModel.org_id == org_id
        )
    ).all()
    if not models:
        return ModelIndex()
    by_id = {model_id: (name, project_id) for model_id, name, project_id in models}
    versions: dict[uuid.UUID, dict[int, ServableVersion]] = {m: {} for m in by_id}
    latest: dict[uuid.UUID, int] = {}
    rows = session.execute(
        select(
            ModelVersion.model_id,
            ModelVersion.version,
            ModelVersion.flavor,
            ModelVersion.status,
            ModelVersion.artifact_uri,
            ModelVersion.artifact_filename,
            ModelVersion.artifact_sha256,
            ModelVersion.signature,
            ModelVersion.trusted_types,
        )
        .join(RegisteredModel, RegisteredModel.id == ModelVersion.model_id)
        .where(RegisteredModel.org_id == org_id)
    )
    for model_id, number, flavor, status, uri, filename, sha, signature, trusted in rows:
        latest[model_id] = max(latest.get(model_id, 0), number)
        if status not in SERVED_STATUSES:
            continue
        name, project_id = by_id[model_id]
        versions[model_id][number] = ServableVersion(
            model_id,
            name,
            number,
            flavor,
            status,
            uri,
            filename,
            sha,
            Signature.from_json(signature),
            tuple(trusted or ()),
            project_id,
        )
    aliases: dict[uuid.UUID, dict[str, int]] = {m: {} for m in by_id}
    for model_id, alias, number in session.execute(
        select(ModelAlias.model_id, ModelAlias.name, ModelAlias.version)
        .join(RegisteredModel, RegisteredModel.id == ModelAlias.model_id)
        .where(RegisteredModel.org_id == org_id)
    ):
        aliases[model_id][alias] = number
    return ModelIndex(
        MappingProxyType(
            {
                name: ServableModel(
                    model_id,
                    name,
                    latest.get(model_id, 0),
                    MappingProxyType(aliases[model_id]),
                    MappingProxyType(versions[model_id]),
                )
                for model_id, (name, _) in by_id.items()
            }
        )
    )
