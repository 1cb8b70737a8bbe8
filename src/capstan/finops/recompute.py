"""Re-pricing past request events after a price was entered late (dated back).

Each event since the given moment is priced again at the price in force when it arrived (the
same `PriceBook` the gateway uses), and only events whose cost changed are rewritten. The run
is one transaction with its audit entry (what it examined and changed, and by how much), so a
report that moved can always be explained, and a run that fails changes nothing. Budget
counters are not touched: they hold the current period's reservations and settle at the price
known then; they are rebuilt from the events at the next start.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update

from capstan.clock import as_utc
from capstan.finops.costing import Usage, cost_of
from capstan.finops.prices import PriceBook
from capstan.governance.audit import AuditLog
from capstan.identity.principal import Principal
from capstan.identity.roles import Permission
from capstan.store.engine import Store
from capstan.store.schema import RequestEvent

BATCH = 2000


@dataclass(frozen=True, slots=True)
class Recomputed:
    since: datetime
    examined: int
    changed: int
    delta_micros: int  # new total minus old total over the changed events


def recompute_costs(
    store: Store, audit: AuditLog, book: PriceBook, principal: Principal, since: datetime
) -> Recomputed:
    principal.require(Permission.PRICES_WRITE)
    since = as_utc(since)
    org_id = principal.scope.org_id
    examined = changed = delta = 0
    columns = (
        RequestEvent.id,
        RequestEvent.created_at,
        RequestEvent.deployment,
        RequestEvent.upstream_model,
        RequestEvent.prompt_tokens,
        RequestEvent.completion_tokens,
        RequestEvent.cached_tokens,
        RequestEvent.cache_write_tokens,
        RequestEvent.reasoning_tokens,
        RequestEvent.cost_micros,
        RequestEvent.cost_estimated,
    )
    after: tuple[datetime, object] | None = None
    with store.write() as session:
        while True:
            statement = select(*columns).where(
                RequestEvent.org_id == org_id,
                RequestEvent.created_at >= since,
                RequestEvent.deployment.is_not(None),
                RequestEvent.prompt_tokens.is_not(None),
            )
            if after is not None:
                statement = statement.where(
                    (RequestEvent.created_at > after[0])
                    | ((RequestEvent.created_at == after[0]) & (RequestEvent.id > after[1]))
                )
            order = (RequestEvent.created_at, RequestEvent.id)
            rows = session.execute(statement.order_by(*order).limit(BATCH)).all()
            for row in rows:
                examined += 1
                price = book.price_for(row.deployment, row.upstream_model or "", row.created_at)
                if price is None:
                    continue
                usage = Usage(
                    prompt_tokens=row.prompt_tokens or 0,
                    completion_tokens=row.completion_tokens or 0,
                    cached_tokens=row.cached_tokens or 0,
                    cache_write_tokens=row.cache_write_tokens or 0,
                    reasoning_tokens=row.reasoning_tokens or 0,
                )
                # Tokens Capstan counted itself stay an estimate at any price.
                cost = cost_of(usage, price, estimated=row.cost_estimated)
                if cost.total == row.cost_micros:
                    continue
                changed += 1
                delta += cost.total - (row.cost_micros or 0)
                session.execute(
                    update(RequestEvent)
                    .where(RequestEvent.id == row.id, RequestEvent.created_at == row.created_at)
                    .values(
                        cost_micros=cost.total,
                        cost_input_micros=cost.input + cost.other,
                        cost_cache_read_micros=cost.cache_read,
                        cost_cache_write_micros=cost.cache_write,
                        cost_output_micros=cost.output,
                        cost_reasoning_micros=cost.reasoning,
                        cost_estimated=cost.estimated,
                    )
                )
            if len(rows) < BATCH:
                break
            after = (rows[-1].created_at, rows[-1].id)
        audit.append(
            session,
            actor=principal.actor,
            action="prices.recompute",
            resource_type="request_events",
            resource_id=since.isoformat(),
            before=None,
            after={
                "since": since.isoformat(),
                "examined": examined,
                "changed": changed,
                "delta_micros": delta,
            },
        )
    return Recomputed(since, examined, changed, delta)
