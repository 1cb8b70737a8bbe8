"""FinOps recommendations: where an organization could spend less, from what it actually did.

Plain functions on plain data: `recommendation_queries` gathers the aggregates (one GROUP BY
statement each) and the configuration, these decide. This module holds what every kind shares
(`Kind`, `Recommendation`, `Thresholds`, the routes and deployments calls went through,
`ranked`, `monthly`) and the two kinds that price the traffic itself:

- `cheaper_model`: per (model asked, project), the window's token mix priced on another model
  of the same mode whose catalog capabilities cover the served model's (input modalities,
  tools) and whose context window and output limit cover the largest prompt and completion
  seen. A model deployed in the organization is preferred (switching is an alias change); one
  only in the catalog needs a deployment first.
- `prompt_caching`: per (model asked, project), calls whose leading instructions and first
  message (`prompt_fingerprint`) repeat, with long prompts, little read from a cache so far and
  a served model with a cached-input price.

The hygiene kinds (`unused_key`, `unused_deployment`, `budget_runout`), which look at what sits
idle or runs out rather than at prices, live in `recommendation_hygiene`, which builds on this
module and not the other way round.

Money is integer micro-dollars; a window's amount is scaled to a 30-day month.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import astuple, dataclass, field, fields, replace
from datetime import datetime
from typing import Any, Literal, NamedTuple, get_args

from capstan.finops.costing import Usage, cost_of
from capstan.finops.money import format_usd, tokens_cost
from capstan.finops.prices import Price, PriceBook
from capstan.gateway.catalog.catalog import Catalog, CatalogModel

Kind = Literal[
    "cheaper_model", "prompt_caching", "unused_key", "unused_deployment", "budget_runout"
]
KINDS: tuple[Kind, ...] = get_args(Kind)
MONTH_DAYS = 30
DEFAULT_DAYS = 30  # the lookback window
MAX_DAYS = 365
NO_PROJECT = "(no project)"


@dataclass(frozen=True, slots=True)
class Thresholds:
    """When a finding is worth saying. Percentages are whole numbers."""

    min_monthly_saving_micros: int = 1_000_000  # $1 a month
    min_saving_percent: int = 10
    min_repeat_percent: int = 20  # of fingerprinted calls, those sharing their fingerprint
    min_cache_calls: int = 50
    min_average_prompt_tokens: int = 1024  # providers cache prefixes from about 1,024 tokens
    max_cached_percent: int = 10  # of prompt tokens already read from a cache
    # Keys whose job is calling models; admin, analyst and approver keys run the control
    # plane, whose calls are not request events, so their silence says nothing.
    idle_roles: frozenset[str] = frozenset({"developer", "service"})
    alternatives: int = 3


@dataclass(frozen=True, slots=True)
class Recommendation:
    kind: Kind
    summary: str
    scope: Mapping[str, str | None]
    action: str
    evidence: Mapping[str, Any]
    monthly_saving_micros: int | None = None
    quality_difference: float | None = None  # candidate's score minus current's; cheaper_model
    quality_note: str | None = None


def parse_kinds(text: str | None) -> tuple[Kind, ...]:
    """Kinds from `cheaper_model` or `unused_key,unused_deployment`; every kind when empty.
    ValueError naming the choices for anything else."""
    names = [name.strip() for name in (text or "").split(",") if name.strip()]
    unknown = [name for name in names if name not in KINDS]
    if unknown:
        raise ValueError(f"{unknown[0]!r} is not a kind: one or more of {', '.join(KINDS)}")
    return tuple(kind for kind in KINDS if kind in names) or KINDS


def monthly(micros: int, days: int) -> int:
    """`micros` seen over `days` days, scaled to a 30-day month (rounded toward zero)."""
    if days <= 0:
        raise ValueError(f"a window is at least one day, not {days}")
    scaled = abs(micros) * MONTH_DAYS // days
    return scaled if micros >= 0 else -scaled


def ranked(found: Iterable[Recommendation]) -> list[Recommendation]:
    """Largest monthly saving first, those without one after; then by kind and summary."""
    return sorted(found, key=_rank)


def _rank(found: Recommendation) -> tuple[bool, int, int, str]:
    saving = found.monthly_saving_micros
    return saving is None, -(saving or 0), KINDS.index(found.kind), found.summary


def usd(micros: int) -> str:
    """`micros` in US dollars, as a summary reads it: `format_usd` and a unit."""
    return f"{format_usd(micros)} USD"


@dataclass(frozen=True, slots=True)
class Route:
    """What a group of calls asked for (an alias or a model), for which project (id and name),
    and what served them."""

    asked: str
    project_id: str | None
    project: str | None
    deployment: str | None
    upstream_model: str | None


@dataclass(frozen=True, slots=True)
class Deployed:
    """A configured deployment: its name, the model it serves, the aliases that use it."""

    name: str
    model: str
    created_at: datetime
    aliases: tuple[str, ...] = ()


def _served_names(route: Route, deployed: Mapping[str, Deployed]) -> list[str]:
    """The names the model that served `route` may go by, most specific first."""
    found = deployed.get(route.deployment or "")
    return [n for n in (route.upstream_model, found and found.model, route.asked) if n]


# -- cheaper models -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TokenMix:
    """Successful calls in the window. The token sums cover the priced calls only, so they and
    `cost_micros` describe the same calls; the two maxima cover every call."""

    calls: int = 0
    priced_calls: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cost_micros: int = 0
    max_prompt_tokens: int = 0
    max_completion_tokens: int = 0

    def __add__(self, other: TokenMix) -> TokenMix:
        summed = TokenMix(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))
        most = {n: max(getattr(self, n), getattr(other, n)) for n in _MAXIMA}
        return replace(summed, **most)

    def usage(self) -> Usage:
        return Usage(
            self.prompt_tokens,
            self.completion_tokens,
            self.cached_tokens,
            self.cache_write_tokens,
            self.reasoning_tokens,
        )


_MAXIMA = ("max_prompt_tokens", "max_completion_tokens")


class _Option(NamedTuple):
    cost: int  # of the window's priced traffic at this option's price
    model: CatalogModel
    deployment: str | None  # None: only in the catalog, a deployment is needed first
    price: Price


@dataclass
class _Pair:
    """One (model asked, project): its traffic summed over whatever served it."""

    route: Route
    mix: TokenMix = TokenMix()
    served: dict[str, int] = field(default_factory=dict)  # catalog id -> calls
    deployments: set[str] = field(default_factory=set)
    unknown: bool = False  # some calls were served by a model the catalog lacks


def _pairs(
    traffic: Iterable[tuple[Route, TokenMix]], catalog: Catalog, deployed: Mapping[str, Deployed]
) -> list[_Pair]:
    pairs: dict[tuple[str, str | None], _Pair] = {}
    for route, mix in traffic:
        pair = pairs.setdefault((route.asked, route.project_id), _Pair(route))
        model = next(filter(None, map(catalog.get, _served_names(route, deployed))), None)
        if model is None:
            pair.unknown = True
        else:
            pair.served[model.id] = pair.served.get(model.id, 0) + mix.calls
        pair.deployments.update([route.deployment] if route.deployment else [])
        pair.mix += mix
    return list(pairs.values())


def _fits(model: CatalogModel, served: Sequence[CatalogModel], mix: TokenMix) -> bool:
    """Whether `model` can take the traffic: the served models' mode, every input modality and
    tools where a served model offers them, room for the largest prompt and completion seen."""
    needed = {modality for s in served for modality in s.input_modalities}
    return (
        model.mode == served[0].mode
        and needed <= set(model.input_modalities)
        and (model.supports_tools or not any(s.supports_tools for s in served))
        and model.context_window >= mix.max_prompt_tokens
        and (model.max_output_tokens or model.context_window) >= mix.max_completion_tokens
    )


def _quality(current: str, candidate: str, scores: Mapping[str, float]) -> tuple[float | None, str]:
    if candidate == current:
        return 0.0, f"the same model ({current}) on another deployment"
    missing = [name for name in (current, candidate) if name not in scores]
    if missing:
        return None, f"no evaluation scores are recorded for {' and '.join(missing)}"
    ours, theirs = scores[current], scores[candidate]
    note = f"evaluation score {theirs} for {candidate}, {ours} for {current}"
    return round(theirs - ours, 6), note


def cheaper_models(
    traffic: Iterable[tuple[Route, TokenMix]],
    *,
    catalog: Catalog,
    book: PriceBook,
    deployments: Sequence[Deployed],
    aliases: Iterable[str],
    days: int,
    now: datetime,
    scores: Mapping[str, float] | None = None,
    thresholds: Thresholds = Thresholds(),
) -> list[Recommendation]:
    """A cheaper model for each (model asked, project) where one saves enough (see the module).
    `scores` maps catalog model ids to evaluation scores, higher better, where any are known."""
    deployed = {d.name: d for d in deployments}
    by_model: dict[str, list[Deployed]] = {}
    for deployment in deployments:
        if (entry := catalog.get(deployment.model)) is not None:
            by_model.setdefault(entry.id, []).append(deployment)
    found = []
    for pair in _pairs(traffic, catalog, deployed):
        served = [model for model in catalog if model.id in pair.served]
        if pair.unknown or not served or pair.mix.cost_micros <= 0:
            continue
        options: list[_Option] = []
        for model in (m for m in catalog if _fits(m, served, pair.mix)):
            routes = [d for d in by_model.get(model.id, []) if d.name not in pair.deployments]
            priced: list[tuple[Price | None, str | None]] = [
                (book.price_for(d.name, d.model, now), d.name) for d in routes
            ]
            if not by_model.get(model.id) and model.id not in pair.served:
                priced = [(book.price_for("", model.id, now), None)]  # no deployment has it
            for price, where in priced:
                if price is not None:
                    options.append(
                        _Option(cost_of(pair.mix.usage(), price).total, model, where, price)
                    )
        best = _best_options(options, pair.mix.cost_micros, days, thresholds)
        if best:
            chosen = best[: 1 + thresholds.alternatives]
            found.append(_cheaper(pair, chosen, frozenset(aliases), days, scores or {}))
    return found


def _best_options(options: list[_Option], cost: int, days: int, t: Thresholds) -> list[_Option]:
    """The cheapest route of each model that saves enough, by saving; a deployed model first."""
    cheapest: dict[str, _Option] = {}
    for option in sorted(options, key=lambda o: (o.cost, o.model.id, o.deployment or "")):
        saved = cost - option.cost
        if saved * 100 >= t.min_saving_percent * cost and (
            monthly(saved, days) >= t.min_monthly_saving_micros
        ):
            cheapest.setdefault(option.model.id, option)
    kept = list(cheapest.values())
    deployed = [o for o in kept if o.deployment is not None]
    return sorted(kept, key=lambda o: o is not deployed[0]) if deployed else kept


def _cheaper(
    pair: _Pair,
    options: list[_Option],
    aliases: frozenset[str],
    days: int,
    scores: Mapping[str, float],
) -> Recommendation:
    mix, asked = pair.mix, pair.route.asked
    project = pair.route.project or NO_PROJECT
    current = max(sorted(pair.served), key=lambda name: pair.served[name])
    new_cost, model, deployment, price = options[0]
    saving = monthly(mix.cost_micros - new_cost, days)
    percent = (mix.cost_micros - new_cost) * 100 // mix.cost_micros
    asked_as = "alias" if asked in aliases else "model"
    difference, note = _quality(current, model.id, scores)
    if deployment is None:
        where = "(needs a new deployment)"
        action = f"add a deployment of {model.id} ({model.provider_kind}), then send "
        action += f"{asked_as} {asked} to it"
    else:
        where = f"on deployment {deployment}"
        action = f"point alias {asked} at deployment {deployment}"
        action = (
            action if asked_as == "alias" else f"call deployment {deployment} instead of {asked}"
        )
    cached = None if price.cached_input is None else format_usd(price.cached_input)
    prices = {"input": format_usd(price.input), "cached_input": cached}
    rates = {"usd_per_million_tokens": prices | {"output": format_usd(price.output)}}
    return Recommendation(
        kind="cheaper_model",
        summary=f"{asked} in project {project}: {model.id} {where} would cost {percent} % less "
        f"for the same traffic, about {usd(saving)} a month",
        scope={"project": project, "project_id": pair.route.project_id, asked_as: asked},
        action=action,
        monthly_saving_micros=saving,
        quality_difference=difference,
        quality_note=note,
        evidence={
            "window_days": days,
            **{f.name: getattr(mix, f.name) for f in fields(mix)},
            "window_cost_usd": format_usd(mix.cost_micros),
            "served_models": dict(sorted(pair.served.items())),
            "candidate_cost_micros": new_cost,
            "candidate_cost_usd": format_usd(new_cost),
            "saving_percent": percent,
            "candidate": _candidate(options[0], mix.cost_micros, days) | rates,
            "alternatives": [_candidate(alt, mix.cost_micros, days) for alt in options[1:]],
        },
    )


def _candidate(option: _Option, cost: int, days: int) -> dict[str, Any]:
    model, deployment = option.model, option.deployment
    return {
        "model": model.id,
        "deployment": deployment,
        "needs_new_deployment": deployment is None,
        "context_window": model.context_window,
        "max_output_tokens": model.max_output_tokens,
        "monthly_saving_micros": monthly(cost - option.cost, days),
    }


# -- prompt caching -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PromptRepeats:
    """Successful calls carrying a prompt fingerprint. A fingerprint seen more than once is a
    repeated prompt; the shortest prompt of its calls bounds the prefix they share."""

    calls: int = 0
    repeated_calls: int = 0  # calls whose fingerprint another call also has
    repeated_prompts: int = 0  # fingerprints seen more than once
    reusable_tokens: int = 0  # Σ over repeated fingerprints of (calls - 1) x shortest prompt
    first_write_tokens: int = 0  # Σ over repeated fingerprints of the shortest prompt
    prompt_tokens: int = 0
    cached_tokens: int = 0

    def __add__(self, other: PromptRepeats) -> PromptRepeats:
        return PromptRepeats(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))


def caching_saving(repeats: PromptRepeats, price: Price | None) -> int | None:
    """What caching would have saved in the window: the reusable prefix not yet read from a
    cache at the input rate less the cached rate, less any surcharge on writing each repeated
    prompt once. None without a cached-input rate below the input rate."""
    if price is None or price.cached_input is None or price.cached_input >= price.input:
        return None
    reads = max(0, repeats.reusable_tokens - repeats.cached_tokens)
    surcharge = max(0, price.cache_write_rate() - price.input)
    saved = tokens_cost(reads, price.input - price.cached_input)
    return max(0, saved - tokens_cost(repeats.first_write_tokens, surcharge))


def prompt_caching(
    rows: Iterable[tuple[Route, PromptRepeats]],
    *,
    book: PriceBook,
    deployments: Sequence[Deployed],
    aliases: Iterable[str],
    days: int,
    now: datetime,
    thresholds: Thresholds = Thresholds(),
) -> list[Recommendation]:
    """Prompt caching for each (model asked, project) whose prompts repeat (see the module)."""
    alias_names = frozenset(aliases)
    deployed = {d.name: d for d in deployments}
    pairs: dict[
        tuple[str, str | None], tuple[Route, PromptRepeats, list[int | None], set[str]]
    ] = {}
    for route, repeats in rows:
        price = book.price_for(route.deployment or "", _served_names(route, deployed)[0], now)
        first, total, savings, served = pairs.get(
            (route.asked, route.project_id), (route, PromptRepeats(), [], set())
        )
        savings.append(caching_saving(repeats, price))
        served.update([route.deployment] if route.deployment else [])
        pairs[(route.asked, route.project_id)] = (first, total + repeats, savings, served)
    t, found = thresholds, []
    for route, r, savings, served in pairs.values():
        saving = monthly(sum(s or 0 for s in savings), days)
        if (
            r.calls < t.min_cache_calls
            or r.repeated_calls * 100 < t.min_repeat_percent * r.calls
            or r.prompt_tokens < t.min_average_prompt_tokens * r.calls
            or r.cached_tokens * 100 > t.max_cached_percent * r.prompt_tokens
            or all(s is None for s in savings)
            or saving < t.min_monthly_saving_micros
        ):
            continue
        project, average = route.project or NO_PROJECT, r.prompt_tokens // r.calls
        asked_as = "alias" if route.asked in alias_names else "model"
        share = r.repeated_calls * 100 // r.calls
        found.append(
            Recommendation(
                kind="prompt_caching",
                summary=f"{route.asked} in project {project}: {share} % "
                f"of calls repeat a prompt (about {average} tokens on average); caching it would "
                f"save about {usd(saving)} a month",
                scope={"project": project, "project_id": route.project_id, asked_as: route.asked},
                action="keep the repeated instructions identical and first, and mark them "
                "cacheable where the provider asks for it (Anthropic: cache_control)",
                monthly_saving_micros=saving,
                evidence={
                    "window_days": days,
                    **{f.name: getattr(r, f.name) for f in fields(r)},
                    "average_prompt_tokens": average,
                    "deployments": sorted(served),
                    "assumes": "each repeated prompt's shortest call is the prefix its calls "
                    "share, and the cache keeps it between them",
                },
            )
        )
    return found
