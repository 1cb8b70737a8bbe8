"""The objects one Capstan process runs on, built once from settings and passed explicitly.

Nothing lives in module globals: the HTTP app, the CLI and the tests each build a `Services`
and hand it to what needs it.
"""

from __future__ import annotations

from dataclasses import dataclass

from capstan.config import Settings
from capstan.finops.budgets import Budgets
from capstan.finops.pauses import Pauses
from capstan.finops.price_overrides import PriceOverrides
from capstan.finops.ratelimits import RateLimits
from capstan.gateway.config.service import GatewayConfig
from capstan.governance.audit import AuditLog
from capstan.governance.secrets.keyring import MasterKeyring
from capstan.governance.secrets.vault import SecretVault
from capstan.identity.api_keys import ApiKeys
from capstan.identity.authenticator import Authenticator
from capstan.identity.changes import ChangeRecorder
from capstan.identity.config_version import ConfigVersions
from capstan.identity.directory import Directory
from capstan.monitor.feedback import FeedbackLog
from capstan.prompts.experiments import Experiments
from capstan.prompts.service import Prompts
from capstan.registry.service import Registry
from capstan.registry.storage import ArtifactStore
from capstan.registry.uploads import Uploads
from capstan.store import Store, create_store


@dataclass
class Services:
    settings: Settings
    store: Store
    audit: AuditLog
    versions: ConfigVersions
    changes: ChangeRecorder
    directory: Directory
    keys: ApiKeys
    authenticator: Authenticator
    vault: SecretVault
    gateway: GatewayConfig
    budgets: Budgets
    prices: PriceOverrides
    pauses: Pauses
    rate_limits: RateLimits
    prompts: Prompts
    experiments: Experiments
    feedback: FeedbackLog
    registry: Registry
    uploads: Uploads

    @classmethod
    def build(cls, settings: Settings) -> Services:
        store = create_store(settings.resolved_database_url, pool_size=settings.db_pool_size)
        audit = AuditLog(store)
        versions = ConfigVersions(store, settings.redis_url, settings.redis_namespace)
        changes = ChangeRecorder(audit, versions)
        directory = Directory(store, changes)
        vault = SecretVault(store, changes, MasterKeyring.load(settings))
        prompts = Prompts(store, directory, changes)
        artifacts = ArtifactStore(settings.artifact_store_url)
        return cls(
            settings=settings,
            store=store,
            audit=audit,
            versions=versions,
            changes=changes,
            directory=directory,
            keys=ApiKeys(store, directory, changes),
            authenticator=Authenticator(store),
            vault=vault,
            gateway=GatewayConfig(store, changes, vault),
            budgets=Budgets(store, directory, changes),
            prices=PriceOverrides(store, changes),
            pauses=Pauses(store, directory, changes),
            rate_limits=RateLimits(store, directory, changes),
            prompts=prompts,
            experiments=Experiments(store, prompts, changes),
            feedback=FeedbackLog(store),
            registry=Registry(store, directory, changes, artifacts),
            uploads=Uploads(artifacts, settings.max_artifact_bytes),
        )

    def close(self) -> None:
        self.versions.close()
        self.store.dispose()
