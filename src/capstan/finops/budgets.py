"""`Budgets`: creating, listing and removing budgets, under the caller's role and scope.

A budget change is a configuration change: it is audited and bumps the config version in the
same transaction, so every gateway replica reloads its rules within a second (the same path as
aliases and deployments). The counters themselves live in the gateway (`finops/guard.py`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from capstan.errors import Conflict, InvalidInput, NotFound
from capstan.finops.budget_rules import (
    ACTIONS,
    DEFAULT_THRESHOLDS,
    PERIODS,
    BudgetRule,
    ScopeKind,
)
from capstan.finops.money import parse_usd
from capstan.identity.changes import ChangeRecorder
from capstan.identity.directory import Directory
from capstan.identity.principal import Principal
from capstan.identity.roles import Permission
from capstan.identity.scope import ScopePath
from capstan.ids import parse_id
from capstan.store.engine import Store
from capstan.store.schema import ApiKey, Budget, Department, Project, Team, User

MAX_THRESHOLDS = 10
MAX_PERCENT = 1000
# What a pause can stop, so what a budget that pauses its own scope may apply to.
PAUSABLE: tuple[ScopeKind, ...] = ("key", "project", "team", "department")
SCOPE_HELP = "org, department:NAME, team:NAME, project:NAME, key:ID, user:ID or tag:KEY=VALUE"


@dataclass(frozen=True, slots=True)
class BudgetRequest:
    name: str
    scope: str
    period: str
    limit_usd: str
    action: str = "block"
    downgrade_to: str | None = None
    thresholds: Sequence[int] | None = None
    pause_at: int | None = None  # percent of the limit at which the scope is paused


@dataclass(frozen=True, slots=True)
class Scope:
    """A budget's scope, resolved: what it applies to and how a person reads it."""

    kind: ScopeKind
    scope_id: uuid.UUID | None
    tag: tuple[str, str] | None
    label: str
    path: ScopePath  # the part of the organization it lies in, for permission checks


class Budgets:
    def __init__(self, store: Store, directory: Directory, changes: ChangeRecorder) -> None:
        self.store = store
        self.directory = directory
        self.changes = changes

    def create(self, principal: Principal, request: BudgetRequest) -> Budget:
        principal.require(Permission.BUDGETS_WRITE)
        checked = _checked(request)
        org_id = principal.scope.org_id
        with self.store.write() as session:
            scope = resolve_scope(session, self.directory, org_id, request.scope)
            principal.require_within(scope.path)
            if request.pause_at is not None and scope.kind not in PAUSABLE:
                raise InvalidInput(
                    f"pause_at pauses the budget's scope, and {scope.label} cannot be paused: "
                    "give it a key, project, team or department scope",
                    field="pause_at",
                )
            row = Budget(
                org_id=org_id,
                name=request.name,
                scope_kind=scope.kind,
                scope_id=scope.scope_id,
                tag_key=scope.tag[0] if scope.tag else None,
                tag_value=scope.tag[1] if scope.tag else None,
                period=request.period,
                limit_micros=checked,
                action=request.action,
                downgrade_to=request.downgrade_to,
                thresholds=_thresholds_of(request),
                pause_at_percent=request.pause_at,
                created_by=principal.key_id,
            )
            session.add(row)
            try:
                self.changes.record(session, principal, "budget.create", row, before=None)
            except IntegrityError as exc:
                raise Conflict(f"a budget named {request.name!r} exists", field="name") from exc
            return row

    def list(self, principal: Principal) -> list[Budget]:
        principal.require(Permission.SPEND_READ)
        with self.store.read() as session:
            rows = session.scalars(
                select(Budget).where(Budget.org_id == principal.scope.org_id).order_by(Budget.name)
            ).all()
            return list(rows)

    def get(self, principal: Principal, ref: str) -> Budget:
        principal.require(Permission.SPEND_READ)
        with self.store.read() as session:
            return _find(session, principal.scope.org_id, ref)

    def delete(self, principal: Principal, ref: str) -> Budget:
        principal.require(Permission.BUDGETS_WRITE)
        with self.store.write() as session:
            row = _find(session, principal.scope.org_id, ref)
            principal.require_within(stored_scope(session, row).path)
            self.changes.record_deletion(session, principal, "budget.delete", row)
            return row


def _checked(request: BudgetRequest) -> int:
    """The limit in micro-dollars, once everything else in the request is known to be valid."""
    if not request.name or len(request.name) > 100:
        raise InvalidInput("a budget needs a name of 1 to 100 characters", field="name")
    if request.period not in PERIODS:
        raise InvalidInput(f"period must be one of {', '.join(PERIODS)}", field="period")
    if request.action not in ACTIONS:
        raise InvalidInput(f"action must be one of {', '.join(ACTIONS)}", field="action")
    if (request.action == "downgrade") != bool(request.downgrade_to):
        raise InvalidInput(
            "downgrade-to (an alias) goes with the downgrade action, and only with it",
            field="downgrade_to",
        )
    thresholds = request.thresholds or DEFAULT_THRESHOLDS
    if len(thresholds) > MAX_THRESHOLDS or not all(0 < t <= MAX_PERCENT for t in thresholds):
        raise InvalidInput(
            f"thresholds are up to {MAX_THRESHOLDS} percentages between 1 and {MAX_PERCENT}",
            field="thresholds",
        )
    _check_pause_at(request)
    try:
        limit = parse_usd(request.limit_usd)
    except ValueError as exc:
        raise InvalidInput(str(exc), field="limit_usd") from exc
    if limit <= 0:
        raise InvalidInput("the limit must be more than 0 USD", field="limit_usd")
    return limit


def _check_pause_at(request: BudgetRequest) -> None:
    if request.pause_at is None:
        return
    if not 0 < request.pause_at <= MAX_PERCENT:
        raise InvalidInput(
            f"pause_at is a percentage of the limit between 1 and {MAX_PERCENT}", field="pause_at"
        )
    if len(_thresholds_of(request)) > MAX_THRESHOLDS:
        raise InvalidInput(
            f"pause_at is one of the thresholds, which are up to {MAX_THRESHOLDS}",
            field="pause_at",
        )


def _thresholds_of(request: BudgetRequest) -> list[int]:
    """The alert percentages, sorted, with the pause percentage among them: the pause is due
    when that threshold is crossed, so the machinery that notices alerts notices it too."""
    chosen = set(request.thresholds or DEFAULT_THRESHOLDS)
    if request.pause_at is not None:
        chosen.add(request.pause_at)
    return sorted(chosen)


def resolve_scope(session: Session, directory: Directory, org_id: uuid.UUID, text: str) -> Scope:
    """`org`, `department:NAME`, `team:NAME`, `project:NAME`, `key:ID`, `user:ID|EMAIL` or
    `tag:KEY=VALUE`; names and ids are looked up in the caller's organization."""
    kind, _, ref = text.partition(":")
    org = ScopePath(org_id)
    if kind == "org" and not ref:
        return Scope("org", org_id, None, "organization", org)
    if not ref:
        raise InvalidInput(f"scope must be {SCOPE_HELP}", field="scope")
    if kind in ("department", "team", "project"):
        path = directory.resolve_scope(session, org_id, **{kind: ref})
        scope_id = path.named_levels()[f"{kind}_id"]
        return Scope(kind, scope_id, None, f"{kind} {ref}", path)  # type: ignore[arg-type]
    if kind == "key":
        key_id = parse_id(ref)
        key = session.get(ApiKey, key_id) if key_id else None
        if key is None or key.org_id != org_id:
            raise NotFound(f"no key {ref!r}", field="scope")
        path = ScopePath(org_id, key.department_id, key.team_id, key.project_id)
        return Scope("key", key.id, None, f"key {key.prefix}", path)
    if kind == "user":
        user = directory.resolve_user(session, org_id, ref)
        return Scope("user", user.id, None, f"user {user.email}", org)
    if kind == "tag":
        key_name, sep, value = ref.partition("=")
        if not sep or not key_name or len(key_name) > 64 or len(value) > 256:
            raise InvalidInput("a tag scope is tag:KEY=VALUE", field="scope")
        return Scope("tag", None, (key_name, value), f"tag {key_name}={value}", org)
    raise InvalidInput(f"scope must be {SCOPE_HELP}", field="scope")


def _find(session: Session, org_id: uuid.UUID, ref: str) -> Budget:
    budget_id = parse_id(ref)
    condition = Budget.id == budget_id if budget_id else Budget.name == ref
    row = session.scalars(select(Budget).where(Budget.org_id == org_id, condition)).first()
    if row is None:
        raise NotFound(f"no budget {ref!r}", field="budget")
    return row


def stored_scope(session: Session, row: Budget) -> Scope:
    """A stored budget's scope, read back: what it applies to, how a person reads it, and
    where in the organization it lies (org-wide for the organization, users and tags)."""
    org = ScopePath(row.org_id)
    tag = (row.tag_key, row.tag_value or "") if row.tag_key is not None else None
    kind: ScopeKind = row.scope_kind  # type: ignore[assignment]
    if kind == "org":
        return Scope(kind, row.org_id, None, "organization", org)
    if kind == "tag" or row.scope_id is None:
        return Scope(kind, None, tag, f"tag {row.tag_key}={row.tag_value}", org)
    return scope_by_id(session, row.org_id, kind, row.scope_id)


def scope_by_id(session: Session, org_id: uuid.UUID, kind: ScopeKind, scope_id: uuid.UUID) -> Scope:
    """A user, department, team, project or key scope read back from its id (budgets and rate
    limits store ids, so a rename never breaks them)."""
    name: str | None = None
    path = ScopePath(org_id)
    if kind == "user":
        user = session.get(User, scope_id)
        name = user.email if user is not None else None
    elif kind == "department":
        department = session.get(Department, scope_id)
        name = department.name if department is not None else None
        path = ScopePath(org_id, scope_id)
    elif kind == "team":
        team = session.get(Team, scope_id)
        if team is not None:
            name, path = team.name, ScopePath(org_id, team.department_id, team.id)
    elif kind == "project":
        project = session.get(Project, scope_id)
        if project is not None:
            name = project.name
            path = ScopePath(org_id, project.department_id, project.team_id, project.id)
    else:
        key = session.get(ApiKey, scope_id)
        if key is not None:
            name = key.name
            path = ScopePath(org_id, key.department_id, key.team_id, key.project_id)
    return Scope(kind, scope_id, None, f"{kind} {name or scope_id}", path)


def load_rules(session: Session, org_id: uuid.UUID) -> list[BudgetRule]:
    """The organization's enabled budgets as the gateway enforces them."""
    rows = session.scalars(
        select(Budget).where(Budget.org_id == org_id, Budget.enabled.is_(True))
    ).all()
    return [
        BudgetRule(
            id=row.id,
            name=row.name,
            scope_kind=row.scope_kind,  # type: ignore[arg-type]
            scope_id=row.org_id if row.scope_kind == "org" else row.scope_id,
            tag=(row.tag_key, row.tag_value or "") if row.tag_key is not None else None,
            period=row.period,  # type: ignore[arg-type]
            limit=row.limit_micros,
            action=row.action,  # type: ignore[arg-type]
            downgrade_to=row.downgrade_to,
            thresholds=tuple(sorted(row.thresholds or DEFAULT_THRESHOLDS)),
            scope_label=stored_scope(session, row).label,
            pause_at=row.pause_at_percent,
        )
        for row in rows
    ]
