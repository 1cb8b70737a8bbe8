"""The routing table: the whole gateway configuration, resolved, in memory, immutable.

This is what the data plane reads on every request, so nothing on the request path touches the
database: the table is loaded once, and loaded again whenever the config version moves. A load
is a handful of queries whatever the size of the configuration (the config version, providers,
deployments, aliases, and the stored keys they need), run in one snapshot so a concurrent
change cannot leave a deployment pointing at a provider the load did not see. Credentials are
resolved here: `env:NAME` from the environment given, `secret:NAME` from the vault. A missing
key does not fail the load; its deployments get `api_key=None` and the reason is kept in
`problems`, so one unset variable disables one provider rather than the gateway.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from sqlalchemy import select
from sqlalchemy.orm import Session

from capstan.finops.budget_rules import BudgetIndex
from capstan.finops.budgets import load_rules
from capstan.finops.pauses import PausedScopes, load_paused
from capstan.finops.price_overrides import load_price_records
from capstan.finops.prices import PriceBook
from capstan.finops.ratelimit_rules import RateLimitIndex
from capstan.finops.ratelimits import load_rate_limits
from capstan.gateway.catalog import Catalog, CatalogModel, default_catalog
from capstan.gateway.config.credentials import Resolver
from capstan.gateway.config.kinds import default_base_url
from capstan.gateway.config.specs import SECRET_OPTIONS
from capstan.gateway.providers.base import Upstream
from capstan.governance.secrets.vault import SecretVault
from capstan.identity.directory import installation_organization
from capstan.prompts.snapshot import PromptIndex, VersionCache, load_prompt_index
from capstan.serving.index import ModelIndex, load_model_index
from capstan.store.engine import Store
from capstan.store.schema import (
    ConfigState,
    GatewayAlias,
    GatewayDeployment,
    GatewayProvider,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Target:
    deployment: str
    weight: int = 1
    priority: int = 0


@dataclass(frozen=True, slots=True)
class Alias:
    name: str
    strategy: str
    targets: tuple[Target, ...]
    fallbacks: tuple[str, ...]
    fallback_on_content_policy: bool = False


@dataclass(frozen=True, slots=True)
class Deployment:
    name: str
    provider: str
    kind: str
    model: str
    upstream: Upstream
    max_concurrency: int | None
    catalog: CatalogModel | None
    max_retries: int = 2
    stream_idle_timeout_s: float | None = None

    @property
    def context_window(self) -> int | None:
        return self.catalog.context_window if self.catalog is not None else None


@dataclass(frozen=True, slots=True)
class RoutingTable:
    """Deployments and aliases by name (disjoint: the config service refuses a clash).

    `problems` maps a provider name to why its credential could not be resolved; `version` is
    the config version the table was read at (compare it with the current one to know when to
    reload)."""

    deployments: Mapping[str, Deployment]
    aliases: Mapping[str, Alias]
    problems: Mapping[str, str] = field(default_factory=dict)
    version: int = 0
    org_id: uuid.UUID | None = None
    # What calls cost (the catalog under the organization's overrides) and the budgets they
    # are held to; loaded with the rest, so a price or budget change reloads like a route.
    prices: PriceBook | None = None
    budgets: BudgetIndex = field(default_factory=lambda: BudgetIndex.of(()))
    # Keys, projects, teams and departments paused by hand, by (kind, id).
    paused: PausedScopes = field(default_factory=dict)
    rate_limits: RateLimitIndex = field(default_factory=lambda: RateLimitIndex.of(()))
    # Managed prompts: labels, running experiments and the versions they name, compiled.
    prompts: PromptIndex = field(default_factory=PromptIndex)
    # Registry models: versions, aliases (served through the Open Inference Protocol).
    models: ModelIndex = field(default_factory=ModelIndex)

    def resolve(self, name: str) -> Alias | Deployment | None:
        return self.aliases.get(name) or self.deployments.get(name)


def load_routing_table(
    store: Store,
    vault: SecretVault,
    environ: Mapping[str, str] = os.environ,
    *,
    catalog: Catalog | None = None,
    prompt_cache: VersionCache | None = None,
) -> RoutingTable:
    """Read and resolve the configuration of the installation's organization."""
    catalog = catalog if catalog is not None else default_catalog()
    resolver = Resolver(environ)
    with store.read() as session:
        _snapshot(session)
        version = session.scalars(select(ConfigState.version).where(ConfigState.id == 1)).one()
        org = installation_organization(session)
        if org is None:
            return RoutingTable(MappingProxyType({}), MappingProxyType({}), version=version)
        org_id = org.id
        providers = session.scalars(
            select(GatewayProvider).where(GatewayProvider.org_id == org_id)
        ).all()
        deployments = session.scalars(
            select(GatewayDeployment).where(GatewayDeployment.org_id == org_id)
        ).all()
        aliases = session.scalars(select(GatewayAlias).where(GatewayAlias.org_id == org_id)).all()
        refs = [p.credential_ref for p in providers]
        refs += [v for p in providers for k, v in p.options.items() if k in SECRET_OPTIONS]
        refs += [v for d in deployments for k, v in d.options.items() if k in SECRET_OPTIONS]
        resolver.load_secrets(session, vault, org_id, refs)
        prices = PriceBook(catalog, load_price_records(session, org_id))
        budgets = BudgetIndex.of(load_rules(session, org_id))
        paused = load_paused(session, org_id)
        rate_limits = RateLimitIndex.of(load_rate_limits(session, org_id))
        prompts = load_prompt_index(session, org_id, prompt_cache)
        models = load_model_index(session, org_id)
    resolved = {p.id: _Provider(p, resolver) for p in providers}
    table = {
        d.name: _deployment(d, resolved[d.provider_id], resolver, catalog)
        for d in deployments
        if d.provider_id in resolved
    }
    routes = {a.name: _alias(a) for a in aliases}
    for provider, problem in resolver.problems.items():
        log.warning("gateway provider %s: %s", provider, problem)
    return RoutingTable(
        MappingProxyType(table),
        MappingProxyType(routes),
        MappingProxyType(resolver.problems),
        version,
        org_id,
        prices,
        budgets,
        MappingProxyType(paused),
        rate_limits,
        prompts,
        models,
    )


def _snapshot(session: Session) -> None:
    """PostgreSQL: read every table as of one moment. SQLite's WAL read transaction already
    does (it sees the database as of its first read)."""
    if session.get_bind().dialect.name == "postgresql":
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})


class _Provider:
    """A provider's key and options resolved once, however many deployments it serves."""

    def __init__(self, row: GatewayProvider, resolver: Resolver) -> None:
        self.row = row
        self.api_key = resolver.resolve(row.name, row.credential_ref)
        self.options = _resolved_options(row.name, row.options, resolver)


def _resolved_options(owner: str, options: Mapping[str, str], resolver: Resolver) -> dict[str, str]:
    """`options` with each credential option's reference replaced by its value (or left out)."""
    resolved = dict(options)
    for key in SECRET_OPTIONS & options.keys():
        value = resolver.resolve(owner, options[key])
        if value is None:
            del resolved[key]
        else:
            resolved[key] = value
    return resolved


def _deployment(
    row: GatewayDeployment, provider: _Provider, resolver: Resolver, catalog: Catalog
) -> Deployment:
    name, kind = provider.row.name, provider.row.kind
    # The deployment's own options win, even where its credential cannot be resolved.
    inherited = {k: v for k, v in provider.options.items() if k not in row.options}
    options = inherited | _resolved_options(name, row.options, resolver)
    base_url = provider.row.base_url or default_base_url(kind, options) or ""
    upstream = Upstream(
        provider=name,
        kind=kind,
        base_url=base_url,
        model=row.model,
        api_key=provider.api_key,
        options=MappingProxyType(options),
        timeout_s=row.timeout_s,
    )
    return Deployment(
        name=row.name,
        provider=name,
        kind=kind,
        model=row.model,
        upstream=upstream,
        max_concurrency=row.max_concurrency,
        catalog=catalog.get(row.model),
        max_retries=row.max_retries,
        stream_idle_timeout_s=row.stream_idle_timeout_s,
    )


def _alias(row: GatewayAlias) -> Alias:
    targets = tuple(Target(t["deployment"], t["weight"], t["priority"]) for t in row.targets)
    return Alias(
        row.name, row.strategy, targets, tuple(row.fallbacks), row.fallback_on_content_policy
    )


__all__ = [
    "Alias",
    "Deployment",
    "RoutingTable",
    "Target",
    "load_routing_table",
]
