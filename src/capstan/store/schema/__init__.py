"""All tables, one module per aggregate; importing this package registers them on `Base`."""

from capstan.store.schema.audit import AuditEntry
from capstan.store.schema.base import Base
from capstan.store.schema.events import RequestEvent
from capstan.store.schema.finops import Budget, BudgetAlert, Pause, PriceOverride, RateLimit
from capstan.store.schema.gateway import GatewayAlias, GatewayDeployment, GatewayProvider
from capstan.store.schema.identity import (
    ApiKey,
    ConfigState,
    Department,
    Organization,
    Project,
    Team,
    User,
)
from capstan.store.schema.prompts import (
    Feedback,
    Prompt,
    PromptExperiment,
    PromptLabel,
    PromptLabelMove,
    PromptVersion,
)
from capstan.store.schema.registry import ModelAlias, ModelVersion, RegisteredModel
from capstan.store.schema.secrets import StoredSecret

__all__ = [
    "ApiKey",
    "AuditEntry",
    "Base",
    "Budget",
    "BudgetAlert",
    "ConfigState",
    "Department",
    "Feedback",
    "GatewayAlias",
    "GatewayDeployment",
    "GatewayProvider",
    "ModelAlias",
    "ModelVersion",
    "Organization",
    "Pause",
    "PriceOverride",
    "Project",
    "Prompt",
    "PromptExperiment",
    "PromptLabel",
    "PromptLabelMove",
    "PromptVersion",
    "RateLimit",
    "RegisteredModel",
    "RequestEvent",
    "StoredSecret",
    "Team",
    "User",
]
