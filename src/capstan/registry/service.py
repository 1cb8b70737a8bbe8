"""`Registry`: registering model versions (artifact scanned, loaded once, stored with its
SHA-256), reading them, moving aliases and changing a version's lifecycle status, under the
caller's role and scope. Every change is audited in its transaction.

A version is immutable: its artifact, signature, metrics, lineage and profile are written once.
What changes is where aliases point and the version's status (registered → staging →
production → archived → retired).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from capstan.clock import utcnow
from capstan.errors import Conflict, InvalidInput, NotFound
from capstan.identity.changes import ChangeRecorder, state_of
from capstan.identity.directory import Directory, owner_scope
from capstan.identity.principal import Principal
from capstan.identity.roles import Permission
from capstan.registry.signature import Signature
from capstan.registry.storage import ArtifactStore
from capstan.store.engine import Store, is_duplicate
from capstan.store.schema import ModelAlias, ModelVersion, RegisteredModel
from capstan.store.schema.registry import FLAVORS, RISK_TIERS, STATUSES

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
ALIAS_PATTERN = re.compile(r"^[a-z][a-z0-9._-]{0,63}$")
# Where a status may go next; `archived` may come back to `staging` (a rollback target).
TRANSITIONS: dict[str, frozenset[str]] = {
    "registered": frozenset({"staging", "production", "archived"}),
    "staging": frozenset({"production", "archived", "registered"}),
    "production": frozenset({"archived", "staging"}),
    "archived": frozenset({"staging", "retired"}),
    "retired": frozenset(),
}


@dataclass(frozen=True)
class VersionRequest:
    """What `register` needs besides the artifact file."""

    name: str
    flavor: str
    signature: dict[str, Any] | None = None  # inferred from the artifact (ONNX) when absent
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=dict)
    profile: dict[str, Any] | None = None
    description: str | None = None
    aliases: tuple[str, ...] = ()
    trusted_types: tuple[str, ...] = ()
    # Feature names of an ONNX model's single (-1, n) input, for the records form.
    columns: tuple[str, ...] = ()
    # The model's own fields, applied when the model is created (or changed, when given).
    owner: str | None = None
    risk_tier: str | None = None
    intended_use: str | None = None
    project: str | None = None


@dataclass(frozen=True)
class Registered:
    model: RegisteredModel
    version: ModelVersion
    aliases: dict[str, int]


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise InvalidInput(
            "a model name is 1 to 100 lower-case letters, digits, '.', '_' or '-'", field="name"
        )
    return name


def check_alias(alias: str) -> str:
    if not ALIAS_PATTERN.match(alias):
        raise InvalidInput(
            "an alias starts with a letter: 1 to 64 lower-case letters, digits, '.', '_', '-'",
            field="alias",
        )
    return alias


class Registry:
    def __init__(
        self, store: Store, directory: Directory, changes: ChangeRecorder, artifacts: ArtifactStore
    ) -> None:
        self.store = store
        self.directory = directory
        self.changes = changes
        self.artifacts = artifacts

    # -- registering ------------------------------------------------------------------------

    def register(self, principal: Principal, request: VersionRequest, artifact: Path) -> Registered:
        """Scan the artifact (pickles refused when unsafe, never executed), load it once (a
        version that cannot be served is never registered), store it with its SHA-256 and
        write the version, its aliases and their audit entries in one transaction."""
        # numpy and the model libraries load with the first registration, not with every
        # process that builds the services.
        from capstan.registry.inference import onnx_signature
        from capstan.registry.scanning import require_safe
        from capstan.serving.loaders import load_model

        principal.require(Permission.REGISTRY_WRITE)
        check_name(request.name)
        _check(request)
        require_safe(artifact)
        data = artifact.read_bytes()
        loaded = load_model(
            request.flavor, data, filename=artifact.name, trusted_types=request.trusted_types
        )
        signature = request.signature
        if signature is None:
            session = getattr(loaded, "session", None)
            if session is None:
                raise InvalidInput(
                    "give the signature, or a sample to infer it from (only ONNX models "
                    "describe their own inputs)",
                    field="signature",
                )
            found = onnx_signature(session)
            only = found.inputs[0] if len(found.inputs) == 1 else None
            if request.columns and only is not None and only.shape[1:] == (len(request.columns),):
                found = Signature(found.inputs, found.outputs, request.columns)
            signature = found.as_json()
        Signature.from_json(signature)  # well-formed, or a KeyError/ValueError below
        with self.store.write() as session:
            model = self._model(session, principal, request)
            number = (
                session.scalar(
                    select(func.max(ModelVersion.version)).where(ModelVersion.model_id == model.id)
                )
                or 0
            ) + 1
            session.flush()  # the model's id names its folder in the artifact store
            stored = self.artifacts.put(
                data, model=str(model.id), version=number, filename=artifact.name
            )
            version = ModelVersion(
                model_id=model.id,
                version=number,
                flavor=request.flavor,
                status="registered",
                artifact_uri=stored.uri,
                artifact_filename=artifact.name,
                artifact_sha256=stored.sha256,
                artifact_size=stored.size,
                signature=signature,
                params=request.params,
                metrics=request.metrics,
                tags=request.tags,
                lineage=request.lineage,
                profile=request.profile,
                trusted_types=list(request.trusted_types),
                description=request.description,
                created_by=principal.actor,
            )
            session.add(version)
            try:
                self.changes.record(
                    session, principal, "model.version.register", version, before=None
                )
            except IntegrityError as exc:
                if not is_duplicate(exc):
                    raise
                raise Conflict(f"model {request.name!r} changed meanwhile; register again") from exc
            for alias in request.aliases:
                self._point(session, principal, model, check_alias(alias), number)
            return Registered(model, version, _aliases(session, model.id))

    def _model(
        self, session: Session, principal: Principal, request: VersionRequest
    ) -> RegisteredModel:
        org_id = principal.scope.org_id
        model = session.scalars(
            select(RegisteredModel).where(
                RegisteredModel.org_id == org_id, RegisteredModel.name == request.name
            )
        ).first()
        project_id = None
        if request.project is not None:
            path = self.directory.resolve_scope(session, org_id, project=request.project)
            project_id = path.project_id
        if model is None:
            model = RegisteredModel(
                org_id=org_id,
                name=request.name,
                project_id=project_id,
                description=request.description,
                intended_use=request.intended_use,
                owner=request.owner or principal.actor,
                risk_tier=request.risk_tier,
                created_by=principal.actor,
            )
            principal.require_within(owner_scope(session, model.org_id, model.project_id))
            session.add(model)
            try:
                self.changes.record(session, principal, "model.create", model, before=None)
            except IntegrityError as exc:
                if not is_duplicate(exc):
                    raise
                raise Conflict(f"model {request.name!r} was created meanwhile") from exc
            return model
        principal.require_within(owner_scope(session, model.org_id, model.project_id))
        before = state_of(model)
        changed = False
        for column, value in (
            ("owner", request.owner),
            ("risk_tier", request.risk_tier),
            ("intended_use", request.intended_use),
            ("project_id", project_id),
        ):
            if value is not None and getattr(model, column) != value:
                setattr(model, column, value)
                changed = True
        if changed:
            self.changes.record(session, principal, "model.update", model, before=before)
        return model

    # -- reading ----------------------------------------------------------------------------

    def all_models(self, principal: Principal) -> list[tuple[RegisteredModel, int, dict[str, int]]]:
        """Every model with its latest version number and its aliases."""
        principal.require(Permission.REGISTRY_READ)
        org_id = principal.scope.org_id
        with self.store.read() as session:
            models = session.scalars(
                select(RegisteredModel)
                .where(RegisteredModel.org_id == org_id)
                .order_by(RegisteredModel.name)
            ).all()
            latest = dict(
                session.execute(
                    select(ModelVersion.model_id, func.max(ModelVersion.version))
                    .join(RegisteredModel, RegisteredModel.id == ModelVersion.model_id)
                    .where(RegisteredModel.org_id == org_id)
                    .group_by(ModelVersion.model_id)
                ).all()
            )
            return [(m, latest.get(m.id, 0), _aliases(session, m.id)) for m in models]

    def model(
        self, principal: Principal, name: str
    ) -> tuple[RegisteredModel, list[ModelVersion], dict[str, int]]:
        principal.require(Permission.REGISTRY_READ)
        with self.store.read() as session:
            model = _find(session, principal.scope.org_id, name)
            versions = session.scalars(
                select(ModelVersion)
                .where(ModelVersion.model_id == model.id)
                .order_by(ModelVersion.version.desc())
            ).all()
            return model, list(versions), _aliases(session, model.id)

    def latest(self, principal: Principal, name: str) -> int:
        principal.require(Permission.REGISTRY_READ)
        with self.store.read() as session:
            model = _find(session, principal.scope.org_id, name)
            found = session.scalar(
                select(func.max(ModelVersion.version)).where(ModelVersion.model_id == model.id)
            )
            return found or 0

    def version(
        self, principal: Principal, name: str, ref: str | int | None = None
    ) -> tuple[RegisteredModel, ModelVersion, dict[str, int]]:
        """A version by number, by alias, or the newest (`ref` None)."""
        principal.require(Permission.REGISTRY_READ)
        with self.store.read() as session:
            return resolve_version(session, principal.scope.org_id, name, ref)

    # -- changing ---------------------------------------------------------------------------

    def set_alias(self, principal: Principal, name: str, alias: str, version: int) -> ModelAlias:
        principal.require(Permission.REGISTRY_WRITE)
        check_alias(alias)
        with self.store.write() as session:
            model = _find(session, principal.scope.org_id, name)
            principal.require_within(owner_scope(session, model.org_id, model.project_id))
            if _version(session, model.id, version) is None:
                raise NotFound(f"model {name!r} has no version {version}", field="version")
            return self._point(session, principal, model, alias, version)

    def remove_alias(self, principal: Principal, name: str, alias: str) -> None:
        principal.require(Permission.REGISTRY_WRITE)
        with self.store.write() as session:
            model = _find(session, principal.scope.org_id, name)
            principal.require_within(owner_scope(session, model.org_id, model.project_id))
            row = session.scalars(
                select(ModelAlias).where(ModelAlias.model_id == model.id, ModelAlias.name == alias)
            ).first()
            if row is None:
                raise NotFound(f"model {name!r} has no alias {alias!r}", field="alias")
            self.changes.record_deletion(session, principal, "model.alias.delete", row)

    def set_status(
        self, principal: Principal, name: str, version: int, status: str
    ) -> ModelVersion:
        """Move a version along its lifecycle (`archive` is `status="archived"`)."""
        principal.require(Permission.REGISTRY_WRITE)
        if status not in STATUSES:
            raise InvalidInput(f"status is one of {', '.join(STATUSES)}", field="status")
        with self.store.write() as session:
            model = _find(session, principal.scope.org_id, name)
            principal.require_within(owner_scope(session, model.org_id, model.project_id))
            row = _version(session, model.id, version)
            if row is None:
                raise NotFound(f"model {name!r} has no version {version}", field="version")
            if status == row.status:
                return row
            if status not in TRANSITIONS[row.status]:
                allowed = ", ".join(sorted(TRANSITIONS[row.status])) or "nothing (it is final)"
                raise Conflict(
                    f"{name} v{version} is {row.status}: it may become {allowed}", field="status"
                )
            before = state_of(row)
            row.status = status
            self.changes.record(session, principal, f"model.version.{status}", row, before=before)
            return row

    def _point(
        self,
        session: Session,
        principal: Principal,
        model: RegisteredModel,
        alias: str,
        version: int,
    ) -> ModelAlias:
        row = session.scalars(
            select(ModelAlias).where(ModelAlias.model_id == model.id, ModelAlias.name == alias)
        ).first()
        before = state_of(row) if row is not None else None
        if row is None:
            row = ModelAlias(model_id=model.id, name=alias, version=version)
            session.add(row)
        row.version = version
        row.updated_at = utcnow()
        row.updated_by = principal.actor
        self.changes.record(session, principal, "model.alias.set", row, before=before)
        return row


def _check(request: VersionRequest) -> None:
    if request.flavor not in FLAVORS:
        raise InvalidInput(f"flavor is one of {', '.join(FLAVORS)}", field="flavor")
    if request.risk_tier is not None and request.risk_tier not in RISK_TIERS:
        raise InvalidInput(f"risk tier is one of {', '.join(RISK_TIERS)}", field="risk_tier")
    for key, value in request.metrics.items():
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise InvalidInput(f"metric {key!r} must be a number", field=f"metrics.{key}")


def resolve_version(
    session: Session, org_id: uuid.UUID, name: str, ref: str | int | None
) -> tuple[RegisteredModel, ModelVersion, dict[str, int]]:
    model = _find(session, org_id, name)
    aliases = _aliases(session, model.id)
    number: int | None
    if ref is None:
        number = session.scalar(
            select(func.max(ModelVersion.version)).where(ModelVersion.model_id == model.id)
        )
    elif isinstance(ref, int) or ref.isdigit():
        number = int(ref)
    elif ref in aliases:
        number = aliases[ref]
    else:
        raise NotFound(f"model {name!r} has no alias {ref!r}", field="alias")
    row = _version(session, model.id, number) if number is not None else None
    if row is None:
        raise NotFound(f"model {name!r} has no version {ref}", field="version")
    return model, row, aliases


def _find(session: Session, org_id: uuid.UUID, name: str) -> RegisteredModel:
    model = session.scalars(
        select(RegisteredModel).where(
            RegisteredModel.org_id == org_id, RegisteredModel.name == name
        )
    ).first()
    if model is None:
        raise NotFound(f"no model {name!r}", field="name")
    return model


def _version(session: Session, model_id: uuid.UUID, number: int) -> ModelVersion | None:
    return session.scalars(
        select(ModelVersion).where(
            ModelVersion.model_id == model_id, ModelVersion.version == number
        )
    ).first()


def _aliases(session: Session, model_id: uuid.UUID) -> dict[str, int]:
    rows = session.execute(
        select(ModelAlias.name, ModelAlias.version).where(ModelAlias.model_id == model_id)
    ).all()
    return {name: version for name, version in rows}
