"""The configuration in the store: read it as a `GatewayState`, write a plan's changes.

Every write runs inside the caller's transaction and records one audit entry per resource
change (plus the vault's entries for a stored key); the caller bumps the config version once
for the whole transaction, so a plan of ten changes moves every replica's routing table once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from capstan.clock import utcnow
from capstan.gateway.config.credentials import seal_key
from capstan.gateway.config.plan import KINDS, Change, Document, GatewayState, Kind
from capstan.gateway.config.specs import SECRET_REF, STORED_PREFIX
from capstan.governance.secrets.vault import SecretVault, lock_for_write
from capstan.identity.changes import ChangeRecorder, state_of
from capstan.identity.principal import Principal
from capstan.ids import new_id
from capstan.store.schema import GatewayAlias, GatewayDeployment, GatewayProvider

Row = GatewayProvider | GatewayDeployment | GatewayAlias
MODELS: dict[Kind, type[Row]] = {
    "provider": GatewayProvider,
    "deployment": GatewayDeployment,
    "alias": GatewayAlias,
}


@dataclass
class Loaded:
    """The state as documents, and the rows behind them (to update in place)."""

    state: GatewayState = field(default_factory=GatewayState)
    rows: dict[Kind, dict[str, Any]] = field(default_factory=lambda: {k: {} for k in KINDS})


def provider_document(row: GatewayProvider) -> Document:
    credential = row.credential_ref
    if row.credential_digest is not None:
        credential = STORED_PREFIX + row.credential_digest
    return {
        "kind": row.kind,
        "base_url": row.base_url,
        "api_key": credential,
        "options": dict(row.options or {}),
    }


def deployment_document(row: GatewayDeployment, provider: str) -> Document:
    return {
        "provider": provider,
        "model": row.model,
        "timeout_s": float(row.timeout_s),
        "max_concurrency": row.max_concurrency,
        "max_retries": row.max_retries,
        "stream_idle_timeout_s": row.stream_idle_timeout_s,
        "options": dict(row.options or {}),
    }


def alias_document(row: GatewayAlias) -> Document:
    return {
        "strategy": row.strategy,
        "targets": [dict(t) for t in row.targets],
        "fallbacks": list(row.fallbacks or []),
        "fallback_on_content_policy": bool(row.fallback_on_content_policy),
    }


def load(session: Session, org_id: uuid.UUID) -> Loaded:
    """The organization's whole configuration: three queries, ordered by name."""
    loaded = Loaded()
    providers = session.scalars(
        select(GatewayProvider)
        .where(GatewayProvider.org_id == org_id)
        .order_by(GatewayProvider.name)
    ).all()
    names = {p.id: p.name for p in providers}
    for provider in providers:
        loaded.rows["provider"][provider.name] = provider
        loaded.state.providers[provider.name] = provider_document(provider)
    for deployment in session.scalars(
        select(GatewayDeployment)
        .where(GatewayDeployment.org_id == org_id)
        .order_by(GatewayDeployment.name)
    ):
        loaded.rows["deployment"][deployment.name] = deployment
        loaded.state.deployments[deployment.name] = deployment_document(
            deployment, names[deployment.provider_id]
        )
    for alias in session.scalars(
        select(GatewayAlias).where(GatewayAlias.org_id == org_id).order_by(GatewayAlias.name)
    ):
        loaded.rows["alias"][alias.name] = alias
        loaded.state.aliases[alias.name] = alias_document(alias)
    return loaded


def _owns_key(change: Change) -> bool:
    """Whether a change stores, replaces or drops a key Capstan keeps for a provider."""
    return change.kind == "provider" and any(
        doc is not None and str(doc.get("api_key") or "").startswith(STORED_PREFIX)
        for doc in (change.before, change.after)
    )


@dataclass
class ChangeWriter:
    """Writes changes, in order, in one session: rows, stored keys and audit entries."""

    session: Session
    principal: Principal
    loaded: Loaded
    changes: ChangeRecorder
    vault: SecretVault
    literals: dict[str, str] = field(default_factory=dict)

    def write(self, ordered: list[Change]) -> None:
        """Apply `ordered` (see `Plan.ordered`), keeping `loaded` in step with the store."""
        if any(_owns_key(change) for change in ordered):
            lock_for_write(self.session)  # before any audit append, in the vault's own order
        for change in ordered:
            if change.action == "delete":
                self._delete(change)
            else:
                self._upsert(change)

    def _upsert(self, change: Change) -> None:
        assert change.after is not None
        rows = self.loaded.rows[change.kind]
        row = rows.get(change.name)
        before = state_of(row) if row is not None else None
        if row is None:
            # The id is set now, not at flush, so deployments created in the same plan can
            # point at a provider that is not written yet.
            row = MODELS[change.kind](
                id=new_id(), org_id=self.principal.scope.org_id, name=change.name
            )
            row.created_at = row.updated_at = utcnow()
            rows[change.name] = row
        else:
            row.updated_at = utcnow()
        if isinstance(row, GatewayProvider):
            self._fill_provider(row, change)
        elif isinstance(row, GatewayDeployment):
            row.provider_id = self.loaded.rows["provider"][change.after["provider"]].id
            row.model = change.after["model"]
            row.timeout_s = change.after["timeout_s"]
            row.max_concurrency = change.after["max_concurrency"]
            row.max_retries = change.after["max_retries"]
            row.stream_idle_timeout_s = change.after["stream_idle_timeout_s"]
            row.options = dict(change.after["options"])
        else:
            row.strategy = change.after["strategy"]
            row.targets = [dict(t) for t in change.after["targets"]]
            row.fallbacks = list(change.after["fallbacks"])
            row.fallback_on_content_policy = change.after["fallback_on_content_policy"]
        self.session.add(row)
        self.changes.record(
            self.session, self.principal, f"{change.kind}.{change.action}", row,
            before=before, bump=False,
        )  # fmt: skip
        self.loaded.state.of(change.kind)[change.name] = change.after

    def _fill_provider(self, row: GatewayProvider, change: Change) -> None:
        assert change.after is not None
        credential: str | None = change.after["api_key"]
        if credential is not None and credential.startswith(STORED_PREFIX):
            digest = credential.removeprefix(STORED_PREFIX)
            if digest != row.credential_digest:
                key = self.literals[change.name]
                name = seal_key(self.session, self.vault, self.principal, change.name, key)
                row.credential_ref, row.credential_digest = f"secret:{name}", digest
        else:
            if credential != row.credential_ref:  # not if the file now names the stored key
                self._drop_owned_key(row)
            row.credential_ref, row.credential_digest = credential, None
        row.kind = change.after["kind"]
        row.base_url = change.after["base_url"]
        row.options = dict(change.after["options"])

    def _drop_owned_key(self, row: GatewayProvider) -> None:
        match = SECRET_REF.match(row.credential_ref or "")
        if row.credential_digest is not None and match:
            self.vault.delete_in(self.session, self.principal, match.group(1))

    def _delete(self, change: Change) -> None:
        row = self.loaded.rows[change.kind].pop(change.name)
        if isinstance(row, GatewayProvider):
            self._drop_owned_key(row)
        self.changes.record_deletion(
            self.session, self.principal, f"{change.kind}.delete", row, bump=False
        )
        self.loaded.state.of(change.kind).pop(change.name, None)
