"""`RateLimits`: creating, listing and removing rate limits, under the caller's role and scope.

Like a budget, a rate limit is configuration: audited, with a config-version bump in the same
transaction, so every gateway replica enforces it within a second. Its counters live with the
budgets' (`finops/guard.py`, memory or Redis).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from capstan.errors import Conflict, InvalidInput, NotFound
from capstan.finops.budgets import Scope, resolve_scope, scope_by_id
from capstan.finops.counters import MAX_AMOUNT
from capstan.finops.money import parse_usd
from capstan.finops.ratelimit_rules import RATE_PERIODS, RateLimitRule
from capstan.identity.changes import ChangeRecorder
from capstan.identity.directory import Directory
from capstan.identity.principal import Principal
from capstan.identity.roles import Permission
from capstan.identity.scope import ScopePath
from capstan.ids import parse_id
from capstan.store.engine import Store
from capstan.store.schema import RateLimit

SCOPE_HELP = "key:ID, project:NAME, team:NAME, department:NAME or model:NAME"
MAX_MODEL = 200


@dataclass(frozen=True, slots=True)
class RateLimitRequest:
    name: str
    scope: str
    period: str  # minute | day
    requests: int | None = None
    tokens: int | None = None
    limit_usd: str | None = None
    # For a key, project, team or department scope: count only its calls to this model.
    model: str | None = None


class RateLimits:
    def __init__(self, store: Store, directory: Directory, changes: ChangeRecorder) -> None:
        self.store = store
        self.directory = directory
        self.changes = changes

    def create(self, principal: Principal, request: RateLimitRequest) -> RateLimit:
        principal.require(Permission.BUDGETS_WRITE)
        usd = _checked(request)
        org_id = principal.scope.org_id
        with self.store.write() as session:
            scope = _scope(session, self.directory, org_id, request)
            principal.require_within(scope.path)
            kind, _, ref = request.scope.partition(":")
            row = RateLimit(
                org_id=org_id,
                name=request.name,
                scope_kind="model" if kind == "model" else scope.kind,
                scope_id=scope.scope_id,
                scope_label=scope.label,
                model=ref if kind == "model" else request.model,
                period=request.period,
                requests=request.requests,
                tokens=request.tokens,
                usd_micros=usd,
                created_by=principal.key_id,
            )
            session.add(row)
            try:
                self.changes.record(session, principal, "rate_limit.create", row, before=None)
            except IntegrityError as exc:
                raise Conflict(f"a rate limit named {request.name!r} exists", field="name") from exc
            return row

    def list(self, principal: Principal) -> list[RateLimit]:
        principal.require(Permission.SPEND_READ)
        with self.store.read() as session:
            rows = session.scalars(
                select(RateLimit)
                .where(RateLimit.org_id == principal.scope.org_id)
                .order_by(RateLimit.name)
            ).all()
            return list(rows)

    def get(self, principal: Principal, ref: str) -> RateLimit:
        principal.require(Permission.SPEND_READ)
        with self.store.read() as session:
            return _find(session, principal.scope.org_id, ref)

    def delete(self, principal: Principal, ref: str) -> RateLimit:
        principal.require(Permission.BUDGETS_WRITE)
        with self.store.write() as session:
            row = _find(session, principal.scope.org_id, ref)
            principal.require_within(_stored_path(session, row))
            self.changes.record_deletion(session, principal, "rate_limit.delete", row)
            return row


def _checked(request: RateLimitRequest) -> int | None:
    """The money limit in micro-dollars, once everything else is known to be valid."""
    if not request.name or len(request.name) > 100:
        raise InvalidInput("a rate limit needs a name of 1 to 100 characters", field="name")
    if request.period not in RATE_PERIODS:
        raise InvalidInput(f"period must be one of {', '.join(RATE_PERIODS)}", field="period")
    if request.requests is None and request.tokens is None and request.limit_usd is None:
        raise InvalidInput(
            "a rate limit caps requests, tokens or USD (at least one)", field="requests"
        )
    for field, value in (("requests", request.requests), ("tokens", request.tokens)):
        if value is not None and (type(value) is not int or not 0 < value <= MAX_AMOUNT):
            raise InvalidInput(f"{field} must be a whole number above 0", field=field)
    if request.model is not None and not 0 < len(request.model) <= MAX_MODEL:
        raise InvalidInput(f"model must be 1 to {MAX_MODEL} characters", field="model")
    if request.limit_usd is None:
        return None
    try:
        usd = parse_usd(request.limit_usd)
    except ValueError as exc:
        raise InvalidInput(str(exc), field="limit_usd") from exc
    if not 0 < usd <= MAX_AMOUNT:
        raise InvalidInput("the USD limit must be more than 0", field="limit_usd")
    return usd


def _scope(
    session: Session, directory: Directory, org_id: uuid.UUID, request: RateLimitRequest
) -> Scope:
    kind, _, ref = request.scope.partition(":")
    if kind == "model":
        if not 0 < len(ref) <= MAX_MODEL:
            raise InvalidInput(f"a model scope is model:NAME ({SCOPE_HELP})", field="scope")
        if request.model is not None:
            raise InvalidInput("a model scope takes no separate model filter", field="model")
        # Not a part of the organization: only an organization-wide writer may limit a model.
        return Scope("org", None, None, f"model {ref}", ScopePath(org_id))
    if kind not in ("key", "project", "team", "department"):
        raise InvalidInput(f"scope must be {SCOPE_HELP}", field="scope")
    return resolve_scope(session, directory, org_id, request.scope)


def _stored_path(session: Session, row: RateLimit) -> ScopePath:
    if row.scope_id is None:  # a model's limit: org-wide
        return ScopePath(row.org_id)
    kind = row.scope_kind
    return scope_by_id(session, row.org_id, kind, row.scope_id).path  # type: ignore[arg-type]


def _find(session: Session, org_id: uuid.UUID, ref: str) -> RateLimit:
    limit_id = parse_id(ref)
    condition = RateLimit.id == limit_id if limit_id else RateLimit.name == ref
    row = session.scalars(select(RateLimit).where(RateLimit.org_id == org_id, condition)).first()
    if row is None:
        raise NotFound(f"no rate limit {ref!r}", field="rate_limit")
    return row


def load_rate_limits(session: Session, org_id: uuid.UUID) -> list[RateLimitRule]:
    """The organization's enabled rate limits as the gateway enforces them."""
    rows = session.scalars(
        select(RateLimit).where(RateLimit.org_id == org_id, RateLimit.enabled.is_(True))
    ).all()
    return [rule_of(row) for row in rows]


def rule_of(row: RateLimit) -> RateLimitRule:
    return RateLimitRule(
        id=row.id,
        name=row.name,
        scope_kind=row.scope_kind,  # type: ignore[arg-type]
        scope_id=row.scope_id,
        model=row.model,
        period=row.period,  # type: ignore[arg-type]
        requests=row.requests,
        tokens=row.tokens,
        usd=row.usd_micros,
        scope_label=row.scope_label,
    )
