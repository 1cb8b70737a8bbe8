"""Money and price arithmetic: exact text forms and exact, unbiased rounding."""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal, localcontext

import pytest
from hypothesis import given
from hypothesis import strategies as st

from capstan.finops.money import (
    format_usd,
    parse_usd,
    price_from_decimal,
    tokens_cost,
    tokens_cost_ceiling,
)

MICROS = st.integers(min_value=0, max_value=10**15)
TOKENS = st.integers(min_value=0, max_value=10**9)
RATES = st.integers(min_value=0, max_value=10**9)  # up to $1,000 per million tokens


def _exact(tokens: int, rate: int) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 60
        return Decimal(tokens) * Decimal(rate) / Decimal(1_000_000)


@pytest.mark.parametrize(
    ("text", "micros"),
    [
        ("12.50", 12_500_000),
        ("0.000001", 1),
        ("12", 12_000_000),
        ("0", 0),
        (" 3.5 ", 3_500_000),
        ("1234.567891", 1_234_567_891),
    ],
)
def test_parse_usd_reads_dollars_as_micros(text: str, micros: int) -> None:
    assert parse_usd(text) == micros


@pytest.mark.parametrize(
    "text",
    ["-1", "-0.50", "1.0000001", "abc", "NaN", "inf", "1e3", "", "1.", ".5", "1,000", "١٢"],
)
def test_parse_usd_rejects_what_is_not_an_exact_amount_naming_it(text: str) -> None:
    with pytest.raises(ValueError, match="amount") as raised:
        parse_usd(text)
    assert repr(text) in str(raised.value)


@pytest.mark.parametrize(
    ("micros", "text"),
    [
        (12_500_000, "12.50"),
        (123, "0.000123"),
        (1_234_500_000, "1234.50"),
        (0, "0.00"),
        (1, "0.000001"),
        (10_000_000, "10.00"),
        (1_100_000, "1.10"),
        (1_234_560, "1.23456"),
        (-2_500_000, "-2.50"),
    ],
)
def test_format_usd_shows_two_to_six_decimals(micros: int, text: str) -> None:
    assert format_usd(micros) == text


@pytest.mark.parametrize("value", [1.5, True, "12"])
def test_format_usd_refuses_what_is_not_integer_micros(value: object) -> None:
    with pytest.raises(TypeError):
        format_usd(value)  # type: ignore[arg-type]


@given(MICROS)
def test_format_then_parse_gives_back_the_same_micros(micros: int) -> None:
    assert parse_usd(format_usd(micros)) == micros


@pytest.mark.parametrize(
    ("price", "micros"),
    [
        ("1.25", 1_250_000),
        ("0.00875", 8_750),
        ("0", 0),
        ("-0", 0),
        ("1E+2", 100_000_000),
        ("0.100000000", 100_000),
        ("75.00", 75_000_000),
    ],
)
def test_price_from_decimal_converts_dollars_per_million_exactly(price: str, micros: int) -> None:
    assert price_from_decimal(Decimal(price)) == micros


@pytest.mark.parametrize("price", ["0.0000001", "-1", "NaN", "Infinity", "sNaN", "-0.000001"])
def test_price_from_decimal_rejects_inexact_or_negative_prices(price: str) -> None:
    with pytest.raises(ValueError, match="price"):
        price_from_decimal(Decimal(price))


@given(st.integers(min_value=0, max_value=10**30))
def test_price_from_decimal_is_exact_for_every_six_decimal_price(micros: int) -> None:
    # Built from text, which is exact; 30 digits is past the default context's 28-digit precision.
    assert price_from_decimal(Decimal(f"{micros}E-6")) == micros


@given(TOKENS, RATES)
def test_tokens_cost_equals_the_exact_cost_rounded_half_even(tokens: int, rate: int) -> None:
    expected = _exact(tokens, rate).quantize(Decimal(1), rounding=ROUND_HALF_EVEN)
    assert tokens_cost(tokens, rate) == int(expected)


@pytest.mark.parametrize(("rate", "cost"), [(500_000, 0), (1_500_000, 2), (2_500_000, 2)])
def test_tokens_cost_rounds_halves_to_even(rate: int, cost: int) -> None:
    assert tokens_cost(1, rate) == cost


@given(TOKENS, RATES)
def test_tokens_cost_ceiling_equals_the_exact_cost_rounded_up(tokens: int, rate: int) -> None:
    expected = _exact(tokens, rate).quantize(Decimal(1), rounding=ROUND_CEILING)
    assert tokens_cost_ceiling(tokens, rate) == int(expected)


@pytest.mark.parametrize("cost", [tokens_cost, tokens_cost_ceiling])
@pytest.mark.parametrize(("tokens", "rate"), [(-1, 1_000_000), (1_000, -1)])
def test_costs_refuse_negative_tokens_or_prices(cost: object, tokens: int, rate: int) -> None:
    assert callable(cost)
    with pytest.raises(ValueError, match="≥ 0"):
        cost(tokens, rate)
