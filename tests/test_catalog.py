"""The model catalog shipped as data: enough models and vendors, exact prices with dates,
tolerant lookups, and `capstan catalog`."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from capstan.errors import ConfigError
from capstan.gateway.catalog import default_catalog, parse_catalog
from capstan.gateway.config.kinds import ProviderKind
from tests.conftest import Capstan
from tests.test_cli import Cli

ENTRY = """\
version: 1
models:
  - id: m
    vendor: v
    provider_kind: openai
    display_name: M
    mode: chat
    context_window: 1000
    max_output_tokens: 100
    modalities: {input: [text], output: [text]}
    supports_tools: true
    supports_streaming: true
    prices: {input: PRICE, output: "1", cached_input: null}
    effective_date: 2025-01-01
"""


def test_the_catalog_has_at_least_35_models_from_8_vendors() -> None:
    catalog = default_catalog()

    assert len(catalog) >= 35
    assert len(catalog.vendors) >= 8
    assert {"openai", "anthropic", "google", "mistral", "cohere", "meta", "deepseek", "xai"} <= set(
        catalog.vendors
    )


def test_every_price_is_an_exact_decimal_with_an_effective_date() -> None:
    for model in default_catalog():
        prices = [model.input_price, model.output_price]
        if model.cached_input_price is not None:
            prices.append(model.cached_input_price)
        assert all(isinstance(p, Decimal) and p >= 0 for p in prices), model.id
        assert model.input_price > 0, model.id
        assert date(2023, 1, 1) <= model.effective_date <= date(2026, 12, 31), model.id


def test_every_model_names_a_known_provider_kind() -> None:
    kinds = {k.value for k in ProviderKind}

    assert {m.provider_kind for m in default_catalog()} <= kinds


def test_the_embedding_models_are_listed() -> None:
    catalog = default_catalog()
    embeddings = {m.id for m in catalog if m.mode == "embedding"}

    assert {
        "text-embedding-3-small",
        "text-embedding-3-large",
        "gemini-embedding-001",
        "embed-v4.0",
        "amazon.titan-embed-text-v2:0",
    } <= embeddings
    assert all(catalog.get(e).output_modalities == ("embedding",) for e in embeddings)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("spelling", "model_id"),
    [
        ("gpt-4o", "gpt-4o"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("GPT-4o-mini", "gpt-4o-mini"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-sonnet-4-0", "claude-sonnet-4"),
        ("anthropic.claude-haiku-4-5-20251001-v1:0", "claude-haiku-4-5"),
        ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5"),
        ("models/gemini-2.5-flash", "gemini-2.5-flash"),
        ("mistral-large-2411", "mistral-large-latest"),
        ("openai/gpt-4.1", "gpt-4.1"),
        ("eu.amazon.nova-pro-v1:0", "amazon.nova-pro-v1:0"),
    ],
)
def test_lookups_tolerate_dates_aliases_and_prefixes(spelling: str, model_id: str) -> None:
    found = default_catalog().get(spelling)

    assert found is not None
    assert found.id == model_id


def test_an_unknown_model_is_none() -> None:
    assert default_catalog().get("my-finetune-v3") is None


def test_by_vendor_lists_one_vendors_models() -> None:
    anthropic = default_catalog().by_vendor("anthropic")

    assert anthropic
    assert {m.vendor for m in anthropic} == {"anthropic"}


def test_a_price_written_as_a_float_is_refused() -> None:
    with pytest.raises(ConfigError):
        parse_catalog(ENTRY.replace("PRICE", "0.1"))


def test_a_price_written_as_a_string_is_exact() -> None:
    [model] = parse_catalog(ENTRY.replace("PRICE", '"0.1"'))

    assert model.input_price == Decimal("0.1")


def test_prices_serialise_as_decimal_strings() -> None:
    model = default_catalog().get("gpt-4o")
    assert model is not None

    assert model.as_dict()["prices"] == {"input": "2.50", "output": "10.00", "cached_input": "1.25"}


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    return Cli(capsys, monkeypatch)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_cli_lists_one_vendor_as_json(cli: Cli, capstan: Capstan) -> None:
    cli.local(capstan)

    models = cli.json("catalog", "--vendor", "xai")

    assert models
    assert {m["vendor"] for m in models} == {"xai"}
    assert all(isinstance(m["prices"]["input"], str) for m in models)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_cli_prints_a_table(cli: Cli, capstan: Capstan) -> None:
    cli.local(capstan)

    code, out, _ = cli("catalog", "--vendor", "deepseek")

    assert code == 0
    assert "deepseek-chat" in out
    assert "0.28" in out
