"""What a call may cost before it runs (the reservation) and what it cost after (the event),
from the organization's price book: the two numbers budgets are made of."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from capstan.finops.costing import Cost, Usage, cost_of, estimate_prompt_tokens, worst_case
from capstan.finops.prices import PriceBook
from capstan.gateway.config.snapshot import Deployment

# Output allowed for when neither the request nor the catalog bounds it.
DEFAULT_MAX_OUTPUT = 16_384


def max_output_tokens(body: Mapping[str, Any], deployment: Deployment) -> int:
    """The most output the call may produce: the request's own cap, else the model's."""
    for name in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    catalog = deployment.catalog
    if catalog is not None and catalog.max_output_tokens:
        return catalog.max_output_tokens
    return DEFAULT_MAX_OUTPUT


def reservation(
    book: PriceBook | None, targets: Sequence[Deployment], body: Mapping[str, Any], at: datetime
) -> tuple[int, int]:
    """The call's worst case over every deployment that may serve it (a fallback may cost more
    than the primary): micro-dollars (0 when none of them has a price) and tokens, prompt
    estimate plus the largest output allowed."""
    prompt = estimate_prompt_tokens(body)
    worst, output = 0, 0
    for deployment in targets:
        most = max_output_tokens(body, deployment)
        output = max(output, most)
        price = None if book is None else book.price_for(deployment.name, deployment.model, at)
        if price is not None:
            worst = max(worst, worst_case(prompt, most, price))
    return worst, prompt + output


def call_cost(
    book: PriceBook | None,
    deployment: str,
    model: str,
    at: datetime,
    usage: Usage,
    *,
    estimated: bool = False,
) -> Cost | None:
    """The cost of a served call at the price in force when it arrived; None when unpriced.
    `estimated`: the tokens were counted by Capstan, not reported by the provider."""
    if book is None:
        return None
    price = book.price_for(deployment, model, at)
    return None if price is None else cost_of(usage, price, estimated=estimated)
