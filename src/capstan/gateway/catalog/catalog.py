"""The model catalog: what each model is (context, modalities, tools) and its list price.

It is data, not code: `models.yaml` ships inside the package and is read once per process. The
gateway attaches a model's entry to every deployment serving it (cost per request, context
checks), and `capstan catalog` prints it. Lookups tolerate the ways one model is spelled: a
dated snapshot (`gpt-4o-2024-08-06`), an alias listed in the file (`claude-sonnet-4-0`), a
Bedrock id or cross-region profile (`us.anthropic.claude-...`), a `models/` prefix.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import lru_cache
from importlib import resources
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from capstan.errors import ConfigError

_DATED = re.compile(r"(?:-\d{4}-\d{2}-\d{2}|-\d{8}|@\d{8})$")
_REGION_PREFIX = re.compile(r"^(?:us|eu|apac|jp|au|ca|global|us-gov)\.")
_PRICE = r"^\d+(?:\.\d+)?$"


@dataclass(frozen=True, slots=True)
class CatalogModel:
    """One model; prices are US dollars per million tokens, exact decimals."""

    id: str
    vendor: str
    provider_kind: str
    display_name: str
    mode: Literal["chat", "embedding"]
    context_window: int
    max_output_tokens: int | None
    input_modalities: tuple[str, ...]
    output_modalities: tuple[str, ...]
    supports_tools: bool
    supports_streaming: bool
    input_price: Decimal
    output_price: Decimal
    cached_input_price: Decimal | None
    effective_date: date
    aliases: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: prices as decimal strings, the date in ISO form."""
        return {
            "id": self.id,
            "vendor": self.vendor,
            "provider_kind": self.provider_kind,
            "display_name": self.display_name,
            "mode": self.mode,
            "context_window": self.context_window,
            "max_output_tokens": self.max_output_tokens,
            "modalities": {
                "input": list(self.input_modalities),
                "output": list(self.output_modalities),
            },
            "supports_tools": self.supports_tools,
            "supports_streaming": self.supports_streaming,
            "prices": {
                "input": str(self.input_price),
                "output": str(self.output_price),
                "cached_input": None
                if self.cached_input_price is None
                else str(self.cached_input_price),
            },
            "effective_date": self.effective_date.isoformat(),
            "aliases": list(self.aliases),
        }


class Catalog:
    """An immutable set of models, looked up by id, alias or a tolerated spelling of either."""

    def __init__(self, models: Iterable[CatalogModel]) -> None:
        self._models = tuple(models)
        self._index: dict[str, CatalogModel] = {}
        for model in self._models:
            for name in (model.id, *model.aliases):
                key = name.lower()
                if key in self._index and self._index[key] is not model:
                    raise ConfigError(f"model catalog: {name!r} names two models")
                self._index[key] = model

    def __iter__(self) -> Iterator[CatalogModel]:
        return iter(self._models)

    def __len__(self) -> int:
        return len(self._models)

    @property
    def vendors(self) -> tuple[str, ...]:
        return tuple(sorted({m.vendor for m in self._models}))

    def by_vendor(self, vendor: str) -> tuple[CatalogModel, ...]:
        wanted = vendor.lower()
        return tuple(m for m in self._models if m.vendor == wanted)

    def get(self, model_id: str) -> CatalogModel | None:
        """The entry for `model_id` as any host spells it, or None for an unknown model."""
        for candidate in _spellings(model_id):
            found = self._index.get(candidate)
            if found is not None:
                return found
        return None


def _spellings(model_id: str) -> Iterator[str]:
    name = model_id.strip().lower()
    yield name
    name = name.removeprefix("models/")
    name = _REGION_PREFIX.sub("", name)
    yield name
    undated = _DATED.sub("", name)
    yield undated
    if "/" in undated:  # an aggregator's `vendor/model` (OpenRouter)
        yield undated.rsplit("/", 1)[1]


# -- the file ------------------------------------------------------------------------------------


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    class _Modalities(BaseModel):
        model_config = ConfigDict(extra="forbid")
        input: list[str] = Field(min_length=1)
        output: list[str] = Field(min_length=1)

    class _Prices(BaseModel):
        model_config = ConfigDict(extra="forbid")
        # Strings only: a YAML float would already have lost the exact value.
        input: str = Field(pattern=_PRICE)
        output: str = Field(pattern=_PRICE)
        cached_input: str | None = Field(default=None, pattern=_PRICE)

    id: str = Field(min_length=1)
    vendor: str = Field(pattern=r"^[a-z0-9-]+$")
    provider_kind: str
    display_name: str
    mode: Literal["chat", "embedding"]
    context_window: int = Field(gt=0)
    max_output_tokens: int | None = Field(gt=0)
    modalities: _Modalities
    supports_tools: bool
    supports_streaming: bool
    prices: _Prices
    effective_date: date
    aliases: list[str] = Field(default_factory=list)

    def model(self) -> CatalogModel:
        cached = self.prices.cached_input
        return CatalogModel(
            id=self.id,
            vendor=self.vendor,
            provider_kind=self.provider_kind,
            display_name=self.display_name,
            mode=self.mode,
            context_window=self.context_window,
            max_output_tokens=self.max_output_tokens,
            input_modalities=tuple(self.modalities.input),
            output_modalities=tuple(self.modalities.output),
            supports_tools=self.supports_tools,
            supports_streaming=self.supports_streaming,
            input_price=Decimal(self.prices.input),
            output_price=Decimal(self.prices.output),
            cached_input_price=None if cached is None else Decimal(cached),
            effective_date=self.effective_date,
            aliases=tuple(self.aliases),
        )


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: Literal[1]
    models: list[_Entry]


def parse_catalog(text: str, source: str = "models.yaml") -> Catalog:
    """A catalog from YAML text; a malformed entry is a `ConfigError` naming it."""
    try:
        parsed = _File.model_validate(yaml.safe_load(text))
    except (yaml.YAMLError, ValidationError) as exc:
        raise ConfigError(f"model catalog {source}: {exc}") from exc
    return Catalog(entry.model() for entry in parsed.models)


@lru_cache(maxsize=1)
def default_catalog() -> Catalog:
    """The catalog shipped with Capstan (read-only data, so reading it once is safe)."""
    text = resources.files("capstan.gateway.catalog").joinpath("models.yaml").read_text("utf-8")
    return parse_catalog(text)
