"""Scopes and roles: who may act where."""

from __future__ import annotations

import uuid

import pytest

from capstan.errors import Forbidden
from capstan.identity.principal import Principal
from capstan.identity.roles import ROLE_PERMISSIONS, Permission, Role, role_can
from capstan.identity.scope import Level, ScopePath

ORG, DEPT, OTHER_DEPT, TEAM, PROJECT = (uuid.uuid4() for _ in range(5))


def test_the_organization_scope_contains_everything_in_it() -> None:
    assert ScopePath(ORG).contains(ScopePath(ORG, DEPT, TEAM, PROJECT))


def test_a_department_scope_contains_its_teams_but_not_other_departments() -> None:
    dept = ScopePath(ORG, DEPT)
    assert dept.contains(ScopePath(ORG, DEPT, TEAM))
    assert not dept.contains(ScopePath(ORG, OTHER_DEPT))


def test_a_narrow_scope_does_not_contain_its_ancestors() -> None:
    assert not ScopePath(ORG, DEPT, TEAM).contains(ScopePath(ORG, DEPT))
    assert not ScopePath(ORG, DEPT).contains(ScopePath(ORG))


def test_a_scope_knows_its_level() -> None:
    assert ScopePath(ORG).level is Level.ORGANIZATION
    assert ScopePath(ORG, DEPT, TEAM, PROJECT).level is Level.PROJECT


def test_a_service_key_may_only_invoke_models_read_prompts_and_send_feedback() -> None:
    assert ROLE_PERMISSIONS[Role.SERVICE] == frozenset(
        {Permission.MODELS_INVOKE, Permission.PROMPTS_READ, Permission.FEEDBACK_WRITE}
    )


@pytest.mark.parametrize("role", [r for r in Role if r is not Role.ADMIN])
def test_only_admins_manage_keys(role: Role) -> None:
    assert not role_can(role, Permission.KEYS_MANAGE)


def test_approvers_cannot_write_the_organization_or_read_the_audit_log() -> None:
    assert not role_can(Role.APPROVER, Permission.ORG_WRITE)
    assert not role_can(Role.APPROVER, Permission.AUDIT_READ)


def test_analysts_read_audit_and_payloads_but_change_nothing() -> None:
    granted = ROLE_PERMISSIONS[Role.ANALYST]
    assert {Permission.AUDIT_READ, Permission.PAYLOADS_READ} <= granted
    assert not any(p.value.endswith(":write") or p is Permission.KEYS_MANAGE for p in granted)


def test_a_principal_outside_the_target_scope_is_forbidden() -> None:
    principal = Principal(actor="t", role=Role.ADMIN, scope=ScopePath(ORG, DEPT))
    principal.require_within(ScopePath(ORG, DEPT, TEAM))
    with pytest.raises(Forbidden):
        principal.require_within(ScopePath(ORG, OTHER_DEPT))
