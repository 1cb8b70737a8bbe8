"""Which price applies: precedence, effective dates, catalog coverage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from capstan.finops.prices import (
    Price,
    PriceBook,
    PriceRecord,
    TargetKind,
    price_from_catalog,
)
from capstan.gateway.catalog.catalog import default_catalog

T0 = datetime(2026, 1, 1, tzinfo=UTC)
LATER = datetime(2030, 1, 1, tzinfo=UTC)


def _price(rate: int, at: datetime = T0, **rates: int | None) -> Price:
    fields: dict[str, int | None] = {
        "cached_input": None,
        "cache_write": None,
        "reasoning": None,
        "per_image": None,
        "per_audio_second": None,
    }
    fields.update(rates)
    return Price(input=rate, output=2 * rate, effective_from=at, source="override", **fields)


def _record(kind: TargetKind, target: str, rate: int, at: datetime = T0) -> PriceRecord:
    return PriceRecord(target_kind=kind, target=target, price=_price(rate, at))


def _book(*records: PriceRecord) -> PriceBook:
    return PriceBook(default_catalog(), records)


def test_every_shipped_catalog_model_gets_its_catalog_price() -> None:
    book = _book()
    for model in default_catalog():
        assert book.price_for("any-deployment", model.id, LATER) == price_from_catalog(model)


def test_catalog_models_are_priced_under_their_aliases() -> None:
    book = _book()
    for model in default_catalog():
        for alias in model.aliases:
            assert book.price_for("d", alias, LATER) == price_from_catalog(model)


def test_price_from_catalog_converts_list_prices_to_micros() -> None:
    model = default_catalog().get("gpt-5")
    assert model is not None
    price = price_from_catalog(model)
    assert (price.input, price.output, price.cached_input) == (1_250_000, 10_000_000, 125_000)
    assert price.effective_from == datetime(2025, 8, 7, tzinfo=UTC)
    assert price.source == "catalog"


def test_catalog_price_applies_from_midnight_utc_of_its_effective_date() -> None:
    book = _book()
    midnight = datetime(2025, 8, 7, tzinfo=UTC)
    assert book.price_for("d", "gpt-5", midnight - timedelta(microseconds=1)) is None
    assert book.price_for("d", "gpt-5", midnight) is not None


def test_model_override_beats_catalog() -> None:
    book = _book(_record("model", "gpt-5", 7))
    found = book.price_for("d", "gpt-5", LATER)
    assert found is not None
    assert (found.input, found.source) == (7, "override")


def test_deployment_override_beats_model_override() -> None:
    book = _book(_record("model", "gpt-5", 7), _record("deployment", "eu-gpt5", 9))
    found = book.price_for("eu-gpt5", "gpt-5", LATER)
    assert found is not None
    assert found.input == 9


def test_deployment_override_prices_only_its_own_deployment() -> None:
    book = _book(_record("model", "gpt-5", 7), _record("deployment", "eu-gpt5", 9))
    found = book.price_for("us-gpt5", "gpt-5", LATER)
    assert found is not None
    assert found.input == 7


def test_model_override_wins_over_a_newer_catalog_price() -> None:
    # gpt-5.1's catalog price took effect 2025-11-13; a contract price from 2025-01-01 stays.
    book = _book(_record("model", "gpt-5.1", 7, datetime(2025, 1, 1, tzinfo=UTC)))
    found = book.price_for("d", "gpt-5.1", LATER)
    assert found is not None
    assert found.input == 7


def test_later_price_change_keeps_the_earlier_price_for_earlier_moments() -> None:
    change = T0 + timedelta(days=30)
    book = _book(_record("model", "gpt-5", 7), _record("model", "gpt-5", 8, change))
    before = book.price_for("d", "gpt-5", change - timedelta(microseconds=1))
    at_change = book.price_for("d", "gpt-5", change)
    assert before is not None
    assert at_change is not None
    assert (before.input, at_change.input) == (7, 8)


def test_override_not_yet_effective_falls_back_to_the_catalog() -> None:
    book = _book(_record("deployment", "d", 9, LATER), _record("model", "gpt-5", 7, LATER))
    found = book.price_for("d", "gpt-5", T0)
    assert found is not None
    assert found.source == "catalog"


@given(
    st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=12, unique=True),
    st.integers(min_value=-10, max_value=10_010),
)
def test_lookup_gives_the_latest_price_effective_at_the_moment(days: list[int], ask: int) -> None:
    records = [_record("deployment", "d", day, T0 + timedelta(days=day)) for day in days]
    found = PriceBook(default_catalog(), records).price_for(
        "d", "not-in-catalog", T0 + timedelta(days=ask)
    )
    effective = [day for day in days if day <= ask]
    assert (found.input if found else None) == (max(effective) if effective else None)


def test_model_override_matches_any_spelling_of_a_catalog_model() -> None:
    book = _book(_record("model", "gpt-4o-2024-08-06", 7))
    found = book.price_for("d", "GPT-4o", LATER)
    assert found is not None
    assert found.input == 7


def test_override_for_a_model_outside_the_catalog_ignores_case() -> None:
    book = _book(_record("model", "Acme-LLM", 7))
    found = book.price_for("d", "acme-llm", LATER)
    assert found is not None
    assert found.input == 7


def test_unknown_model_without_override_has_no_price() -> None:
    assert _book().price_for("d", "acme-llm", LATER) is None


def test_two_prices_for_one_target_at_one_moment_are_rejected() -> None:
    with pytest.raises(ValueError, match="gpt-5"):
        _book(_record("model", "gpt-5", 7), _record("model", "gpt-5", 8))


def test_lookup_at_a_naive_moment_is_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        _book().price_for("d", "gpt-5", datetime(2030, 1, 1))


def test_price_with_a_naive_effective_moment_is_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        _price(1, datetime(2030, 1, 1))


def test_price_effective_moment_is_kept_in_utc() -> None:
    paris = timezone(timedelta(hours=1))
    price = _price(1, datetime(2026, 1, 1, 1, tzinfo=paris))
    assert price.effective_from == T0
    assert price.effective_from.tzinfo is UTC


@pytest.mark.parametrize("field", ["cached_input", "cache_write", "reasoning", "per_image"])
def test_price_with_a_negative_rate_is_rejected(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        _price(1, T0, **{field: -1})


def test_unlisted_rates_fall_back_to_input_and_output() -> None:
    price = _price(10)
    assert (price.cached_input_rate(), price.cache_write_rate()) == (10, 10)
    assert price.reasoning_rate() == 20


def test_listed_rates_are_used_as_they_are() -> None:
    price = _price(10, cached_input=1, cache_write=12, reasoning=30)
    assert (price.cached_input_rate(), price.cache_write_rate(), price.reasoning_rate()) == (
        1,
        12,
        30,
    )


def test_prices_at_lists_what_price_for_would_use() -> None:
    book = _book(_record("model", "gpt-5", 7), _record("deployment", "eu-gpt5", 9))
    rows = book.prices_at(LATER)
    assert ("deployment", "eu-gpt5", _price(9)) in rows
    gpt5 = [price for kind, target, price in rows if (kind, target) == ("model", "gpt-5")]
    assert gpt5 == [_price(7)]
    assert len(rows) == 1 + len(default_catalog())
    assert rows == sorted(rows, key=lambda row: (row[0], row[1]))


def test_prices_at_omits_prices_not_yet_in_effect() -> None:
    book = _book(_record("deployment", "d", 9, LATER))
    rows = book.prices_at(datetime(2025, 8, 7, tzinfo=UTC))
    assert all(kind == "model" for kind, _, _ in rows)
    assert ("model", "gpt-5") in {(kind, target) for kind, target, _ in rows}
    assert ("model", "gpt-5.1") not in {(kind, target) for kind, target, _ in rows}
