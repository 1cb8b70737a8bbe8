"""Budget threshold alerts: recorded once per budget, period and threshold (whichever replica
saw the crossing first wins the unique row), then posted to a webhook when one is configured.

The webhook body is Slack-compatible (`text`) and carries the figures as fields for any other
receiver. Delivery is best effort and off the request path; the recorded alert is what counts.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

import aiohttp
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from capstan.finops.budget_rules import period_start
from capstan.finops.guard import Crossing
from capstan.finops.money import format_usd
from capstan.store.engine import Store
from capstan.store.schema import BudgetAlert

log = logging.getLogger(__name__)
WEBHOOK_TIMEOUT_S = 5.0


class BudgetAlerts:
    def __init__(self, store: Store, webhook_url: str | None = None) -> None:
        self.store = store
        self.webhook_url = webhook_url
        self._tasks: set[asyncio.Task[None]] = set()

    def raise_(self, crossings: list[Crossing], at: datetime, http: aiohttp.ClientSession) -> None:
        """Called on the event loop by the settlement that crossed the thresholds."""
        task = asyncio.get_running_loop().create_task(self._handle(crossings, at, http))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(
        self, crossings: list[Crossing], at: datetime, http: aiohttp.ClientSession
    ) -> None:
        for crossing in crossings:
            try:
                new = await asyncio.to_thread(self._record, crossing, at)
            except Exception:
                log.exception("could not record a budget alert for %s", crossing.rule.name)
                continue
            if new and self.webhook_url and await self._post(http, crossing):
                await asyncio.to_thread(self._delivered, crossing, at)

    def _record(self, crossing: Crossing, at: datetime) -> bool:
        """True when this is the first time the threshold is recorded for the period."""
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
        except IntegrityError:
            return False  # another replica (or an earlier settlement) recorded it
        log.warning(
            "budget %s (%s) crossed %d %%: %s of %s USD",
            rule.name,
            rule.scope_label,
            crossing.threshold,
            format_usd(crossing.spent),
            format_usd(rule.limit),
        )
        return True

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

    async def _post(self, http: aiohttp.ClientSession, crossing: Crossing) -> bool:
        assert self.webhook_url is not None
        rule = crossing.rule
        text = (
            f"Capstan budget {rule.name!r} ({rule.scope_label}, {rule.period}) crossed "
            f"{crossing.threshold} %: {format_usd(crossing.spent)} of "
            f"{format_usd(rule.limit)} USD; at the limit it will {rule.action}."
        )
        body = {
            "text": text,
            "budget": rule.name,
            "scope": rule.scope_label,
            "period": rule.period,
            "threshold_percent": crossing.threshold,
            "spent_usd": format_usd(crossing.spent),
            "limit_usd": format_usd(rule.limit),
            "action": rule.action,
        }
        try:
            async with http.post(
                self.webhook_url, json=body, timeout=aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT_S)
            ) as response:
                if response.status >= 300:
                    log.warning("budget webhook answered %d", response.status)
                    return False
                return True
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("budget webhook failed: %s", exc)
            return False
