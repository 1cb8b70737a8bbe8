"""`GatewayConfig`: providers, deployments and aliases, read and changed under the caller's role.

Every write, a single REST call or a whole applied file, goes the same way: load the current
configuration, plan the change (`plan.py`), check the state it leaves, then write the rows,
their audit entries and one config-version bump in one transaction. Reads and writes are
organization-wide; changes need an organization-wide key, as the routing table is shared by
every team.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from capstan.errors import Conflict, InvalidInput, NotFound
from capstan.gateway.config import persist
from capstan.gateway.config.kinds import default_base_url
from capstan.gateway.config.persist import MODELS, ChangeWriter, Loaded, Row
from capstan.gateway.config.plan import (
    Change,
    Document,
    Kind,
    Plan,
    after_plan,
    check_references,
    dependents,
)
from capstan.gateway.config.specs import (
    AliasSpec,
    AnySpec,
    DeploymentSpec,
    ProviderSpec,
    alias_document,
    api_key_view,
    deployment_document,
    provider_document,
)
from capstan.governance.secrets.vault import SecretVault
from capstan.identity.changes import ChangeRecorder
from capstan.identity.principal import Principal
from capstan.identity.roles import Permission
from capstan.identity.scope import ScopePath
from capstan.store.engine import Store
from capstan.store.schema import GatewayDeployment, GatewayProvider


@dataclass(frozen=True, slots=True)
class Resource:
    """One configured resource as the API shows it."""

    kind: Kind
    id: uuid.UUID
    name: str
    document: Document
    created_at: datetime
    updated_at: datetime

    def view(self) -> dict[str, Any]:
        public = dict(self.document)
        if self.kind == "provider":
            public["api_key"] = api_key_view(public["api_key"])
            public["effective_base_url"] = public["base_url"] or default_base_url(
                public["kind"], public["options"]
            )
        return {
            "id": self.id,
            "name": self.name,
            **public,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


def _kind_of(spec: AnySpec) -> Kind:
    if isinstance(spec, ProviderSpec):
        return "provider"
    return "deployment" if isinstance(spec, DeploymentSpec) else "alias"


def document_of(spec: AnySpec, prefix: str = "") -> tuple[Document, str | None]:
    """A spec's canonical document and the literal key it carries, if any."""
    if isinstance(spec, ProviderSpec):
        return provider_document(spec, prefix)
    if isinstance(spec, DeploymentSpec):
        return deployment_document(spec, prefix), None
    assert isinstance(spec, AliasSpec)
    return alias_document(spec, prefix), None


def _require_writer(principal: Principal, changes: Sequence[Change]) -> None:
    """Changes need an organization-wide key; provider changes also secrets:write."""
    principal.require_within(ScopePath(principal.scope.org_id))
    if any(c.kind == "provider" for c in changes):
        principal.require(Permission.SECRETS_WRITE)


class GatewayConfig:
    def __init__(self, store: Store, changes: ChangeRecorder, vault: SecretVault) -> None:
        self.store = store
        self.changes = changes
        self.vault = vault

    # -- reads ------------------------------------------------------------------------------------

    def list(
        self, principal: Principal, kind: Kind, after: uuid.UUID | None, limit: int
    ) -> list[Resource]:
        principal.require(Permission.GATEWAY_READ)
        model = MODELS[kind]
        statement = select(model).where(model.org_id == principal.scope.org_id)
        if after is not None:
            statement = statement.where(model.id > after)
        with self.store.read() as session:
            rows: Sequence[Row] = session.scalars(  # type: ignore[assignment]
                statement.order_by(model.id).limit(limit)
            ).all()
            provider_ids = {r.provider_id for r in rows if isinstance(r, GatewayDeployment)}
            names: dict[uuid.UUID, str] = {}
            if provider_ids:
                found = session.execute(
                    select(GatewayProvider.id, GatewayProvider.name).where(
                        GatewayProvider.id.in_(provider_ids)
                    )
                )
                names = {row_id: name for row_id, name in found}
        return [_resource(kind, row, names) for row in rows]

    def get(self, principal: Principal, kind: Kind, name: str) -> Resource:
        principal.require(Permission.GATEWAY_READ)
        with self.store.read() as session:
            loaded = persist.load(session, principal.scope.org_id)
        return _loaded_resource(loaded, kind, name)

    # -- writes -----------------------------------------------------------------------------------

    def create(self, principal: Principal, spec: AnySpec) -> Resource:
        kind = _kind_of(spec)
        document, literal = document_of(spec)

        def plan(loaded: Loaded) -> Plan:
            taken = _name_owner(loaded, spec.name, kind)
            if taken is not None:
                raise Conflict(f"a {taken} named {spec.name!r} already exists", field="name")
            return Plan((Change("create", kind, spec.name, None, document),), 0)

        paths = {(kind, spec.name): ""}
        loaded, _ = self.apply_plan(principal, plan, paths, _literals(spec, literal))
        return _loaded_resource(loaded, kind, spec.name)

    def replace(self, principal: Principal, name: str, spec: AnySpec) -> Resource:
        kind = _kind_of(spec)
        if spec.name != name:
            raise InvalidInput(
                f"name: the body names {spec.name!r} but the path {name!r}; renaming is "
                "delete and create",
                field="name",
            )
        document, literal = document_of(spec)

        def plan(loaded: Loaded) -> Plan:
            before = loaded.state.of(kind).get(name)
            if before is None:
                raise NotFound(f"no {kind} named {name!r}", field="name")
            if before == document:
                return Plan((), 1)
            return Plan((Change("update", kind, name, before, document),), 0)

        loaded, _ = self.apply_plan(principal, plan, {(kind, name): ""}, _literals(spec, literal))
        return _loaded_resource(loaded, kind, name)

    def delete(self, principal: Principal, kind: Kind, name: str) -> None:
        def plan(loaded: Loaded) -> Plan:
            before = loaded.state.of(kind).get(name)
            if before is None:
                raise NotFound(f"no {kind} named {name!r}", field="name")
            users = dependents(loaded.state, kind, name)
            if users:
                raise Conflict(
                    f"{kind} {name!r} is still used by {', '.join(users)}",
                    field="name",
                    dependents=users,
                )
            return Plan((Change("delete", kind, name, before, None),), 0)

        self.apply_plan(principal, plan, {}, {})

    def apply_plan(
        self,
        principal: Principal,
        make_plan: Callable[[Loaded], Plan],
        paths: dict[tuple[Kind, str], str],
        literals: dict[str, str],
        *,
        dry_run: bool = False,
    ) -> tuple[Loaded, Plan]:
        """Load the configuration, plan against it and check the state the plan leaves; then,
        unless `dry_run`, write it in the same transaction: rows, stored keys, one audit entry
        per change and one config-version bump when anything changed. `paths` places each
        resource in the input, for errors (see `check_references`)."""
        principal.require(Permission.GATEWAY_READ if dry_run else Permission.GATEWAY_WRITE)
        transaction = self.store.read if dry_run else self.store.write
        with transaction() as session:
            loaded = persist.load(session, principal.scope.org_id)
            plan = make_plan(loaded)
            check_references(after_plan(loaded.state, plan), paths)
            if not dry_run:
                self._execute(principal, session, loaded, plan, literals)
        return loaded, plan

    def _execute(
        self,
        principal: Principal,
        session: Session,
        loaded: Loaded,
        plan: Plan,
        literals: dict[str, str],
    ) -> None:
        _require_writer(principal, plan.changes)
        writer = ChangeWriter(session, principal, loaded, self.changes, self.vault, literals)
        try:
            writer.write(plan.ordered())
        except IntegrityError as exc:  # a concurrent writer took the same name first
            raise Conflict("the configuration changed concurrently; try again") from exc
        if plan.changes:
            self.changes.versions.bump(session)


def _literals(spec: AnySpec, literal: str | None) -> dict[str, str]:
    return {spec.name: literal} if literal is not None else {}


def _name_owner(loaded: Loaded, name: str, kind: Kind) -> str | None:
    """Which kind already uses `name` in a way that clashes: the same kind, or (since clients
    call both by name) a deployment for an alias and the other way round."""
    clashes: tuple[Kind, ...] = (kind,)
    if kind in ("deployment", "alias"):
        clashes = ("deployment", "alias")
    return next((k for k in clashes if name in loaded.state.of(k)), None)


def _resource(kind: Kind, row: Row, provider_names: dict[uuid.UUID, str]) -> Resource:
    if isinstance(row, GatewayProvider):
        document = persist.provider_document(row)
    elif isinstance(row, GatewayDeployment):
        document = persist.deployment_document(row, provider_names[row.provider_id])
    else:
        document = persist.alias_document(row)
    return Resource(kind, row.id, row.name, document, row.created_at, row.updated_at)


def _loaded_resource(loaded: Loaded, kind: Kind, name: str) -> Resource:
    row = loaded.rows[kind].get(name)
    if row is None:
        raise NotFound(f"no {kind} named {name!r}", field="name")
    document = loaded.state.of(kind)[name]
    return Resource(kind, row.id, row.name, document, row.created_at, row.updated_at)
