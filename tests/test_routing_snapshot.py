"""The routing table the data plane reads: credentials resolved, options merged, base URLs
defaulted, names resolved, in a few queries."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from capstan.bootstrap import system_principal
from capstan.gateway.config.apply import apply_document
from capstan.gateway.config.snapshot import (
    Alias,
    Deployment,
    RoutingTable,
    Target,
    load_routing_table,
)
from capstan.identity.principal import Principal
from tests.conftest import Capstan

CONFIG = """\
providers:
  - name: openai-main
    kind: openai
    api_key: env:OPENAI_API_KEY
    options: {organization: org-1, extra_headers: {x-team: a}}
  - name: anthropic-main
    kind: anthropic
    api_key: sk-ant-stored-in-the-vault
  - name: local
    kind: ollama
  - name: mistral-eu
    kind: mistral
    api_key: env:MISTRAL_API_KEY
  - name: bedrock-us
    kind: bedrock
    options: {region: us-west-2, aws_secret_access_key: "secret:aws-secret"}
deployments:
  - {name: mini, provider: openai-main, model: gpt-4o-mini-2024-07-18, timeout_s: 12.5,
     max_concurrency: 40, options: {organization: org-2, seed: 7}}
  - {name: haiku, provider: anthropic-main, model: claude-haiku-4-5}
  - {name: llama, provider: local, model: llama3.2}
  - {name: small, provider: mistral-eu, model: mistral-small-latest}
  - {name: nova, provider: bedrock-us, model: amazon.nova-pro-v1:0}
aliases:
  - name: chat
    strategy: weighted
    targets: [{deployment: mini, weight: 3}, {deployment: haiku, weight: 1, priority: 2}]
    fallbacks: [llama]
"""
ENVIRON = {"OPENAI_API_KEY": "sk-openai-from-env"}


def admin_of(capstan: Capstan) -> Principal:
    return system_principal(capstan.services.directory.organization())


def configured(capstan: Capstan, text: str = CONFIG) -> None:
    capstan.services.vault.put(admin_of(capstan), "aws-secret", "aws-secret-value")
    apply_document(capstan.services.gateway, admin_of(capstan), text)


def load(capstan: Capstan, environ: dict[str, str] | None = None) -> RoutingTable:
    services = capstan.services
    return load_routing_table(
        services.store, services.vault, ENVIRON if environ is None else environ
    )


def deployment(table: RoutingTable, name: str) -> Deployment:
    found = table.resolve(name)
    assert isinstance(found, Deployment)
    return found


def test_an_env_key_is_read_from_the_given_environment(capstan: Capstan) -> None:
    configured(capstan)

    assert deployment(load(capstan), "mini").upstream.api_key == "sk-openai-from-env"


def test_a_stored_key_is_revealed_from_the_vault(capstan: Capstan) -> None:
    configured(capstan)

    assert deployment(load(capstan), "haiku").upstream.api_key == "sk-ant-stored-in-the-vault"


def test_a_missing_env_key_is_recorded_and_the_rest_still_loads(capstan: Capstan) -> None:
    configured(capstan)

    table = load(capstan)

    assert deployment(table, "small").upstream.api_key is None
    assert table.problems == {"mistral-eu": "environment variable MISTRAL_API_KEY is not set"}
    assert len(table.deployments) == 5


def test_a_provider_without_a_key_needs_none(capstan: Capstan) -> None:
    configured(capstan)

    table = load(capstan)

    assert deployment(table, "llama").upstream.api_key is None
    assert "local" not in table.problems


def test_deployment_options_override_provider_options_as_text(capstan: Capstan) -> None:
    configured(capstan)

    upstream = deployment(load(capstan), "mini").upstream

    assert dict(upstream.options) == {
        "organization": "org-2",
        "extra_headers": '{"x-team":"a"}',
        "seed": "7",
    }
    assert (upstream.timeout_s, upstream.model) == (12.5, "gpt-4o-mini-2024-07-18")


def test_a_secret_option_is_resolved_from_the_vault(capstan: Capstan) -> None:
    configured(capstan)

    options = deployment(load(capstan), "nova").upstream.options

    assert options["aws_secret_access_key"] == "aws-secret-value"


def test_base_urls_default_per_kind(capstan: Capstan) -> None:
    configured(capstan)
    table = load(capstan)

    urls = {name: deployment(table, name).upstream.base_url for name in table.deployments}

    assert urls == {
        "mini": "https://api.openai.com/v1",
        "haiku": "https://api.anthropic.com",
        "llama": "http://localhost:11434/v1",
        "small": "https://api.mistral.ai/v1",
        "nova": "https://bedrock-runtime.us-west-2.amazonaws.com",
    }


def test_resolve_finds_aliases_and_deployments(capstan: Capstan) -> None:
    configured(capstan)
    table = load(capstan)

    assert table.resolve("chat") == Alias(
        name="chat",
        strategy="weighted",
        targets=(Target("mini", 3, 0), Target("haiku", 1, 2)),
        fallbacks=("llama",),
    )
    mini = deployment(table, "mini")
    assert (mini.provider, mini.kind, mini.max_concurrency) == ("openai-main", "openai", 40)
    assert table.resolve("nothing") is None


def test_deployments_carry_their_catalog_entry(capstan: Capstan) -> None:
    configured(capstan)
    table = load(capstan)

    mini = deployment(table, "mini").catalog
    assert mini is not None
    assert mini.id == "gpt-4o-mini"
    assert deployment(table, "llama").catalog is None


def test_the_table_records_the_config_version_it_was_read_at(capstan: Capstan) -> None:
    configured(capstan)

    assert load(capstan).version == capstan.services.versions.current()


def test_an_empty_configuration_loads_an_empty_table(capstan: Capstan) -> None:
    table = load(capstan)

    assert (dict(table.deployments), dict(table.aliases)) == ({}, {})


@contextmanager
def counted_queries(capstan: Capstan) -> Iterator[list[str]]:
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    engine = capstan.services.store.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


def test_a_load_is_a_few_queries_however_many_providers(capstan: Capstan) -> None:
    many = "providers:\n" + "".join(
        f"  - {{name: p{i}, kind: openai, api_key: literal-key-{i}}}\n" for i in range(25)
    )
    many += "deployments:\n" + "".join(
        f"  - {{name: d{i}, provider: p{i}, model: gpt-4o}}\n" for i in range(25)
    )
    apply_document(capstan.services.gateway, admin_of(capstan), many)

    with counted_queries(capstan) as statements:
        table = load(capstan)

    assert len(table.deployments) == 25
    assert deployment(table, "d7").upstream.api_key == "literal-key-7"
    # version, organization, providers, deployments, aliases, stored keys, prices, budgets,
    # pauses, rate limits, prompts and registry models (none here: their versions are not read)
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) <= 12
