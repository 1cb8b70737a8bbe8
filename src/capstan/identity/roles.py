"""Roles and what each may do: one table, read by the single authorization dependency.

Segregation of duties is built into the table: the `approver` who signs off promotions cannot
manage keys or the organization, the `analyst` who reads spend, audit and logged payloads cannot
change anything, and a `service` key can only call models.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    APPROVER = "approver"
    DEVELOPER = "developer"
    ANALYST = "analyst"
    SERVICE = "service"


class Permission(StrEnum):
    ORG_READ = "org:read"
    ORG_WRITE = "org:write"
    USERS_READ = "users:read"
    USERS_WRITE = "users:write"
    KEYS_MANAGE = "keys:manage"
    AUDIT_READ = "audit:read"
    SECRETS_READ = "secrets:read"
    SECRETS_WRITE = "secrets:write"
    MODELS_INVOKE = "models:invoke"
    PAYLOADS_READ = "payloads:read"
    APPROVE = "approve"
    # Gateway configuration (providers, deployments, aliases). Changing a provider also needs
    # SECRETS_WRITE: a provider decides where a credential is sent, so a developer, who may
    # configure deployments and aliases, cannot point a key at an endpoint of their choosing.
    GATEWAY_READ = "gateway:read"
    GATEWAY_WRITE = "gateway:write"
    # FinOps: spend, budgets and negotiated prices are read by finance (analysts) and admins;
    # only admins set budgets and prices, so whoever spends cannot lift their own limit.
    SPEND_READ = "spend:read"
    BUDGETS_WRITE = "budgets:write"
    PRICES_WRITE = "prices:write"
    # Prompts: read by everyone who calls models (the client helper fetches them with a
    # service key), written by developers and admins. Moving a `production` label whose project
    # asks for approval needs APPROVE instead: the approver signs off what goes live.
    PROMPTS_READ = "prompts:read"
    PROMPTS_WRITE = "prompts:write"
    # The model registry: read by everyone who reads the organization; registering versions,
    # moving aliases and changing a version's status by developers and admins.
    REGISTRY_READ = "registry:read"
    REGISTRY_WRITE = "registry:write"
    # Scores and labels for what a call or a prediction produced (users' thumbs, ground truth).
    FEEDBACK_WRITE = "feedback:write"


_READ_ORG = {
    Permission.ORG_READ,
    Permission.MODELS_INVOKE,
    Permission.GATEWAY_READ,
    Permission.PROMPTS_READ,
    Permission.REGISTRY_READ,
}

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(
        {
            *_READ_ORG,
            Permission.ORG_WRITE,
            Permission.USERS_READ,
            Permission.USERS_WRITE,
            Permission.KEYS_MANAGE,
            Permission.AUDIT_READ,
            Permission.SECRETS_READ,
            Permission.SECRETS_WRITE,
            Permission.GATEWAY_WRITE,
            Permission.SPEND_READ,
            Permission.BUDGETS_WRITE,
            Permission.PRICES_WRITE,
            Permission.PROMPTS_WRITE,
            Permission.REGISTRY_WRITE,
            Permission.FEEDBACK_WRITE,
        }
    ),
    Role.APPROVER: frozenset({*_READ_ORG, Permission.APPROVE}),
    Role.DEVELOPER: frozenset(
        {
            *_READ_ORG,
            Permission.SECRETS_READ,
            Permission.GATEWAY_WRITE,
            Permission.PROMPTS_WRITE,
            Permission.REGISTRY_WRITE,
            Permission.FEEDBACK_WRITE,
        }
    ),
    Role.ANALYST: frozenset(
        {
            *_READ_ORG,
            Permission.USERS_READ,
            Permission.AUDIT_READ,
            Permission.PAYLOADS_READ,
            Permission.SPEND_READ,
        }
    ),
    Role.SERVICE: frozenset(
        {Permission.MODELS_INVOKE, Permission.PROMPTS_READ, Permission.FEEDBACK_WRITE}
    ),
}


def role_can(role: Role, permission: Permission) -> bool:
    return permission in ROLE_PERMISSIONS[role]
