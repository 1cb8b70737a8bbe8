"""Which price applies to a call: deployment override, else model override, else the catalog.

Prices are integer micro-dollars per million tokens (see `money`). Every price has the moment it
took effect, and a lookup names the moment of the call, so a price change never rewrites the
cost of earlier calls: asking for a time before the change gives the old price. The precedence
is by specificity, not by date: an organization's negotiated price for a deployment (or a
model) is its contract, and a newer list price shipped in Capstan's catalog must not silently
replace it. Dates only order the records of one target.

`PriceBook` is immutable and built once per change of the overrides; `price_for` runs once per
model call, so everything that can be is precomputed: per target a sorted tuple of effective
moments searched with `bisect`, and the catalog's prices converted once.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from itertools import pairwise
from typing import Literal

from capstan.finops.money import price_from_decimal
from capstan.gateway.catalog.catalog import Catalog, CatalogModel

PriceSource = Literal["catalog", "override"]
MEMO_LIMIT = 10_000  # distinct model names remembered (they come from the configuration)
TargetKind = Literal["model", "deployment"]


@dataclass(frozen=True, slots=True)
class Price:
    """Rates in micro-dollars per million tokens (per image, per audio second where named).

    The optional rates are None where the vendor does not price that part separately, and each
    falls back to the rate it is billed at then: cache reads and cache writes as input,
    reasoning as output. `per_image` and `per_audio_second` None mean "included in the token
    counts" (vision models bill images as prompt tokens), so such units cost nothing extra.
    """

    input: int
    output: int
    cached_input: int | None
    cache_write: int | None
    reasoning: int | None
    per_image: int | None
    per_audio_second: int | None
    effective_from: datetime
    source: PriceSource
    # The largest rate any prompt token and any output token may be billed at, for the worst
    # case a budget reserves (worked out once: it is needed on every budgeted call).
    top_input_rate: int = field(init=False, repr=False, compare=False)
    top_output_rate: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # A negative rate would turn spend into credit, and a naive moment cannot be ordered
        # against the aware moments of calls: both are bugs to stop where the price is made.
        for name in ("input", "output", "cached_input", "cache_write", "reasoning"):
            _check_rate(name, getattr(self, name))
        _check_rate("per_image", self.per_image)
        _check_rate("per_audio_second", self.per_audio_second)
        if self.effective_from.tzinfo is None:
            raise ValueError(f"effective_from must be timezone-aware: {self.effective_from!r}")
        object.__setattr__(self, "effective_from", self.effective_from.astimezone(UTC))
        top_input = max(self.input, self.cached_input_rate(), self.cache_write_rate())
        object.__setattr__(self, "top_input_rate", top_input)
        object.__setattr__(self, "top_output_rate", max(self.output, self.reasoning_rate()))

    def cached_input_rate(self) -> int:
        """The rate of cache reads: `cached_input`, or the input rate where none is listed."""
        return self.input if self.cached_input is None else self.cached_input

    def cache_write_rate(self) -> int:
        """The rate of cache writes: `cache_write`, or the input rate where none is listed."""
        return self.input if self.cache_write is None else self.cache_write

    def reasoning_rate(self) -> int:
        """The rate of reasoning tokens: `reasoning`, or the output rate where none is listed."""
        return self.output if self.reasoning is None else self.reasoning


def _check_rate(name: str, value: int | None) -> None:
    if value is not None and value < 0:
        raise ValueError(f"price {name} may not be negative: {value}")


@dataclass(frozen=True, slots=True)
class PriceRecord:
    """An override: `price` for a model (id as the catalog or vendor spells it) or a deployment."""

    target_kind: TargetKind
    target: str
    price: Price


def price_from_catalog(model: CatalogModel) -> Price:
    """The catalog's list price of `model`, effective from 00:00 UTC on its effective date.

    The catalog lists no cache-write, reasoning, image or audio rates, so those fall back
    (cache writes as input, reasoning as output); override where a contract differs.
    """
    cached = model.cached_input_price
    return Price(
        input=price_from_decimal(model.input_price),
        output=price_from_decimal(model.output_price),
        cached_input=None if cached is None else price_from_decimal(cached),
        cache_write=None,
        reasoning=None,
        per_image=None,
        per_audio_second=None,
        effective_from=datetime.combine(model.effective_date, time(), tzinfo=UTC),
        source="catalog",
    )


class _Timeline:
    """The prices of one target, ordered by the moment each took effect."""

    __slots__ = ("_moments", "_prices")

    def __init__(self, target: str, prices: Iterable[Price]) -> None:
        ordered = sorted(prices, key=lambda price: price.effective_from)
        for before, after in pairwise(ordered):
            if before.effective_from == after.effective_from:
                raise ValueError(
                    f"two prices for {target!r} take effect at {after.effective_from.isoformat()}"
                )
        self._moments = tuple(price.effective_from for price in ordered)
        self._prices = tuple(ordered)

    def at(self, moment: datetime) -> Price | None:
        index = bisect_right(self._moments, moment) - 1
        return self._prices[index] if index >= 0 else None


_DAWN = datetime.min.replace(tzinfo=UTC)
_DUSK = datetime.max.replace(tzinfo=UTC)


class PriceBook:
    """The prices in force for an organization: its overrides over the shipped catalog.

    Immutable: when overrides change, build a new book and swap the reference, so a lookup in
    flight never sees half an update. Two records for one target taking effect at the same
    moment are a `ValueError`, since nothing could say which one applies.
    """

    __slots__ = (
        "_catalog",
        "_catalog_prices",
        "_deployments",
        "_keys",
        "_memo",
        "_models",
        "_moments",
    )

    def __init__(self, catalog: Catalog, records: Iterable[PriceRecord] = ()) -> None:
        self._catalog = catalog
        # Model name -> its key, memoised: `Catalog.get` tries several spellings with regular
        # expressions, and `price_for` runs on every call.
        self._keys: dict[str, str] = {}
        self._catalog_prices = {model.id: price_from_catalog(model) for model in catalog}
        by_deployment: dict[str, list[Price]] = {}
        by_model: dict[str, list[Price]] = {}
        for record in records:
            if record.target_kind == "deployment":
                by_deployment.setdefault(record.target, []).append(record.price)
            elif record.target_kind == "model":
                by_model.setdefault(self._model_key(record.target), []).append(record.price)
            else:
                raise ValueError(f"unknown price target kind: {record.target_kind!r}")
        self._deployments = {name: _Timeline(name, ps) for name, ps in by_deployment.items()}
        self._models = {key: _Timeline(key, ps) for key, ps in by_model.items()}
        # Every moment a price takes effect: between two of them, every lookup's answer is
        # fixed, so `price_for` remembers it per (deployment, model) with the span it holds for.
        self._moments = sorted(
            {p.effective_from for p in self._catalog_prices.values()}
            | {p.effective_from for ps in by_deployment.values() for p in ps}
            | {p.effective_from for ps in by_model.values() for p in ps}
        )
        self._memo: dict[tuple[str, str], tuple[Price | None, datetime, datetime]] = {}

    def _model_key(self, model: str) -> str:
        """The catalog id for a model the catalog knows (any spelling), else the name folded.

        So an override entered for "gpt-4o" prices calls to "gpt-4o-2024-08-06" as well, and
        one for a model the catalog lacks still matches however its case is written.
        """
        key = self._keys.get(model)
        if key is None:
            entry = self._catalog.get(model)
            key = entry.id if entry is not None else model.strip().lower()
            if len(self._keys) < MEMO_LIMIT:
                self._keys[model] = key
        return key

    def price_for(self, deployment: str, model: str, at: datetime) -> Price | None:
        """The price of a call to `model` through `deployment` at the moment `at`.

        A deployment's own price effective at `at` wins, else the model's override, else the
        catalog's list price from its effective date on; None when nothing prices the call
        (an unknown model, or a moment before any price took effect), so the caller records
        the cost as unknown instead of guessing. `at` must be timezone-aware.
        """
        if at.tzinfo is None:
            raise ValueError(f"the moment of a call must be timezone-aware: {at!r}")
        known = self._memo.get((deployment, model))
        if known is not None and known[1] <= at < known[2]:
            return known[0]
        price = self._lookup(deployment, model, at)
        index = bisect_right(self._moments, at)
        start = self._moments[index - 1] if index > 0 else _DAWN
        end = self._moments[index] if index < len(self._moments) else _DUSK
        if len(self._memo) >= MEMO_LIMIT:
            self._memo.clear()
        self._memo[(deployment, model)] = (price, start, end)
        return price

    def _lookup(self, deployment: str, model: str, at: datetime) -> Price | None:
        timeline = self._deployments.get(deployment)
        if timeline is not None:
            found = timeline.at(at)
            if found is not None:
                return found
        key = self._model_key(model)
        return self._model_price(key, at)

    def _model_price(self, key: str, at: datetime) -> Price | None:
        timeline = self._models.get(key)
        if timeline is not None:
            found = timeline.at(at)
            if found is not None:
                return found
        listed = self._catalog_prices.get(key)
        if listed is not None and listed.effective_from <= at:
            return listed
        return None

    def prices_at(self, at: datetime) -> list[tuple[str, str, Price]]:
        """(kind, target, price) for every target priced at `at`, catalog models included.

        A model shows the price `price_for` would use for it (its override, else the catalog),
        so the listing answers "what would a call cost now", sorted by kind then target.
        """
        if at.tzinfo is None:
            raise ValueError(f"the moment must be timezone-aware: {at!r}")
        listed: list[tuple[str, str, Price]] = []
        for name, timeline in self._deployments.items():
            found = timeline.at(at)
            if found is not None:
                listed.append(("deployment", name, found))
        for key in self._models.keys() | self._catalog_prices.keys():
            price = self._model_price(key, at)
            if price is not None:
                listed.append(("model", key, price))
        listed.sort(key=lambda row: (row[0], row[1]))
        return listed
