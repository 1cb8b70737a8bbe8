"""Budget threshold alerts: recorded once per budget, period and threshold (whichever replica
saw the crossing first wins the unique row), then posted to a webhook when one is configured.

The webhook body is Slack-compatible (`text`) and carries the figures as fields for any other
receiver. Delivery is best effort and off the request path; the recorded alert is what counts.

A budget with `pause_at` pauses its own scope when that threshold's alert is recorded, in the
alert's transaction: the unique alert row makes exactly one replica pause, once per period, and
a failure leaves neither the alert nor the pause half done.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import NamedTuple

import orjson
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from capstan.finops.budget_rules import period_start
from capstan.finops.budgets import stored_scope
from capstan.finops.guard import Crossing
from capstan.finops.money import format_usd
from capstan.finops.pauses import Pauses
from capstan.gateway.upstream_client import TransportError, UpstreamClient
from capstan.store.engine import Store
from capstan.store.schema import Budget, BudgetAlert

log = logging.getLogger(__name__)
WEBHOOK_TIMEOUT_S = 5.0


class Recorded(NamedTuple):
    """What recording a crossing did: whether it is the period's first, and whether it paused
    the budget's scope (False when there was nothing to pause or it was paused already)."""

    new: bool
    paused: bool = False


def pause_reason(crossing: Crossing) -> str:
    """What every refused caller of a scope a budget paused is told."""
    rule = crossing.rule
    return (
        f"budget {rule.name!r} reached {crossing.threshold} % of its {rule.period} limit "
        f"({format_usd(crossing.spent)} of {format_usd(rule.limit)} USD)"
    )


def pauser(budget_name: str) -> str:
    """Who a budget's pause is by, in the pause row, the audit chain and refusals."""
    return f"budget:{budget_name}"


class BudgetAlerts:
    def __init__(self, store: Store, pauses: Pauses, webhook_url: str | None = None) -> None:
        self.store = store
        self.pauses = pauses
        self.webhook_url = webhook_url
        self._tasks: set[asyncio.Task[None]] = set()
        # The alerts raised last: each batch waits for the one before, so thresholds are
        # recorded, and posted, in the order they were crossed (50 % before 80 %).
        self._last: asyncio.Task[None] | None = None

    def raise_(self, crossings: list[Crossing], at: datetime, http: UpstreamClient) -> None:
        """Called on the event loop by the settlement that crossed the thresholds."""
        loop = asyncio.get_running_loop()
        task = loop.create_task(self._after(self._last, crossings, at, http))
        self._last = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _after(
        self,
        previous: asyncio.Task[None] | None,
        crossings: list[Crossing],
        at: datetime,
        http: UpstreamClient,
    ) -> None:
        if previous is not None and not previous.done():
            await asyncio.wait({previous})  # whatever became of it
        await self._handle(crossings, at, http)

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(self, crossings: list[Crossing], at: datetime, http: UpstreamClient) -> None:
        for crossing in crossings:
            try:
                recorded = await asyncio.to_thread(self._record, crossing, at)
            except Exception:
                log.exception("could not record a budget alert for %s", crossing.rule.name)
                continue
            if (
                recorded.new
                and self.webhook_url
                and await self._post(http, crossing, paused=recorded.paused)
            ):
                await asyncio.to_thread(self._delivered, crossing, at)

    def _record(self, crossing: Crossing, at: datetime) -> Recorded:
        """Record the alert, and pause the budget's scope if this threshold is its `pause_at`,
        when this is the first time the threshold is recorded for the period."""
        rule = crossing.rule
        try:
            with self.store.write() as session:
                session.add(
                    BudgetAlert(
                        budget_id=rule.id,
                        period_start=period_start(rule.period, at),
                        threshold=crossing.threshold,
                        spent_micros=crossing.spent,
                        limit_micros=rule.limit,
                    )
                )
                session.flush()  # a repeat fails here, before anything is paused
                paused = self._pause_if_due(session, crossing)
        except IntegrityError:
            return Recorded(new=False)  # another replica (or an earlier settlement) recorded it
        log.warning(
            "budget %s (%s) crossed %d %%: %s of %s USD",
            rule.name,
            rule.scope_label,
            crossing.threshold,
            format_usd(crossing.spent),
            format_usd(rule.limit),
        )
        if paused:
            log.warning("budget %s paused %s", rule.name, rule.scope_label)
        return Recorded(new=True, paused=paused)

    def _pause_if_due(self, session: Session, crossing: Crossing) -> bool:
        """Pause the budget's scope when `crossing` is its pause threshold; False when it is
        not, the budget was deleted meanwhile, or the scope is paused already (by hand or by
        another budget), whose pause then stands as it is."""
        rule = crossing.rule
        if rule.pause_at is None or crossing.threshold != rule.pause_at:
            return False
        budget = session.get(Budget, rule.id)
        if budget is None:
            return False
        scope = stored_scope(session, budget)
        started = self.pauses.start(
            session, budget.org_id, scope, pause_reason(crossing), pauser(rule.name)
        )
        return started is not None

    def _delivered(self, crossing: Crossing, at: datetime) -> None:
        rule = crossing.rule
        with self.store.write() as session:
            session.execute(
                update(BudgetAlert)
                .where(
                    BudgetAlert.budget_id == rule.id,
                    BudgetAlert.period_start == period_start(rule.period, at),
                    BudgetAlert.threshold == crossing.threshold,
                )
                .values(delivered=True)
            )

    async def _post(self, http: UpstreamClient, crossing: Crossing, *, paused: bool) -> bool:
        assert self.webhook_url is not None
        rule = crossing.rule
        text = (
            f"Capstan budget {rule.name!r} ({rule.scope_label}, {rule.period}) crossed "
            f"{crossing.threshold} %: {format_usd(crossing.spent)} of "
            f"{format_usd(rule.limit)} USD; at the limit it will {rule.action}."
        )
        if paused:
            text += f" Capstan paused {rule.scope_label} until someone resumes it."
        body = {
            "text": text,
            "budget": rule.name,
            "scope": rule.scope_label,
            "period": rule.period,
            "threshold_percent": crossing.threshold,
            "spent_usd": format_usd(crossing.spent),
            "limit_usd": format_usd(rule.limit),
            "action": rule.action,
            "paused": paused,
        }
        try:
            async with asyncio.timeout(WEBHOOK_TIMEOUT_S):
                response = await http.post(
                    self.webhook_url,
                    headers={"content-type": "application/json"},
                    body=orjson.dumps(body),
                    timeout_s=WEBHOOK_TIMEOUT_S,
                )
                try:
                    await response.read()
                finally:
                    response.close()
            if response.status >= 300:
                log.warning("budget webhook answered %d", response.status)
                return False
            return True
        except (TransportError, TimeoutError, ValueError) as exc:
            log.warning("budget webhook failed: %s", exc)
            return False
