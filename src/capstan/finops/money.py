"""Money and prices as integers: micro-dollars, and micro-dollars per million tokens.

Money is an `int` of micro-dollars (1 USD = 1,000,000 µ$). Integers add exactly, so a month of
request costs sums to the micro-dollar however it is grouped, and budget counters (in memory or
in Redis) stay integer arithmetic that cannot drift. A price is an `int` of micro-dollars per
million tokens: a list price of $1.25 / M tokens is 1,250,000, so every price quoted with up to
six decimals is exact, and the cost of a call is one multiplication and one integer division.

The text forms are strict on purpose: a budget limit or a negotiated price typed as
"12.5000001" or "-3" is an operator's mistake, and saying so beats silently rounding it.
"""

from __future__ import annotations

import re
from decimal import Decimal

MICROS_PER_USD = 1_000_000
"""Micro-dollars in one US dollar."""

TOKENS_PER_PRICE_UNIT = 1_000_000
"""Prices are quoted per million tokens."""

# ASCII digits only: `\d` alone would also take Arabic-Indic and other Unicode digits.
_USD = re.compile(r"(\d+)(?:\.(\d{1,6}))?", re.ASCII)


def parse_usd(text: str) -> int:
    """Micro-dollars from a decimal US-dollar amount such as "12.50" or "0.000001".

    Accepts digits with an optional point and one to six decimals, surrounding blanks ignored.
    Rejects (with a `ValueError` naming the value) negatives, more than six decimals, exponents,
    NaN and infinities: each would either lose exactness or is not an amount anyone means.
    """
    stripped = text.strip()
    match = _USD.fullmatch(stripped)
    if match is None:
        if stripped.startswith("-"):
            raise ValueError(f"a US-dollar amount may not be negative: {text!r}")
        raise ValueError(
            f"not a US-dollar amount (digits, optionally a point and at most 6 decimals): {text!r}"
        )
    whole, fraction = match.groups()
    return int(whole) * MICROS_PER_USD + int((fraction or "").ljust(6, "0"))


def format_usd(micros: int) -> str:
    """The dollar text of `micros`: at least 2 decimals, up to 6, no thousands separators.

    `12_500_000` → "12.50", `123` → "0.000123", `1_234_500_000` → "1234.50". Nothing is rounded,
    so `parse_usd(format_usd(m)) == m` for every m ≥ 0; no separators keeps the text machine-
    readable (CSV exports, the CLI) in every locale. A negative amount (an overspent balance)
    gets a leading "-", which `parse_usd` rejects because no input amount may be negative.
    """
    if isinstance(micros, bool) or not isinstance(micros, int):
        raise TypeError(f"micro-dollars must be an int, not {type(micros).__name__}: {micros!r}")
    sign = "-" if micros < 0 else ""
    whole, fraction = divmod(abs(micros), MICROS_PER_USD)
    decimals = f"{fraction:06d}".rstrip("0").ljust(2, "0")
    return f"{sign}{whole}.{decimals}"


def price_from_decimal(usd_per_million: Decimal) -> int:
    """Micro-dollars per million tokens from a Decimal list price in US dollars per million.

    Exact or nothing: a price with more than six decimals (or negative, NaN, infinite) is a
    `ValueError`, because rounding a price would misstate every cost computed from it. Works on
    the Decimal's digits, not through a decimal context, so no precision setting can round it.
    """
    if not usd_per_million.is_finite():
        raise ValueError(f"a price must be a finite number: {usd_per_million!r}")
    sign, digits, exponent = usd_per_million.as_tuple()
    coefficient = int("".join(map(str, digits))) if digits else 0
    if sign and coefficient:
        raise ValueError(f"a price may not be negative: {usd_per_million}")
    assert isinstance(exponent, int)  # finite, so never the 'n'/'N'/'F' markers
    shift = exponent + 6
    scale: int = 10 ** abs(shift)
    if shift >= 0:
        return coefficient * scale
    quotient, remainder = divmod(coefficient, scale)
    if remainder:
        raise ValueError(f"a price may have at most 6 decimals (US dollars): {usd_per_million}")
    return quotient


def tokens_cost(tokens: int, micros_per_million: int) -> int:
    """The cost in micro-dollars of `tokens` at a price per million, rounded half to even.

    Integer arithmetic only, so it is exact and as fast as Python gets; half-to-even keeps the
    rounding unbiased across millions of calls, where always rounding halves up would add a
    steady fraction of a micro-dollar per call. Negative inputs are a `ValueError`: a cost is
    never a credit, and a negative count is a bug upstream that must not net off real spend.
    """
    if tokens < 0 or micros_per_million < 0:
        raise ValueError(f"tokens and price must be ≥ 0: {tokens}, {micros_per_million}")
    quotient, remainder = divmod(tokens * micros_per_million, TOKENS_PER_PRICE_UNIT)
    twice = 2 * remainder
    if twice > TOKENS_PER_PRICE_UNIT or (twice == TOKENS_PER_PRICE_UNIT and quotient & 1):
        return quotient + 1
    return quotient


def tokens_cost_ceiling(tokens: int, micros_per_million: int) -> int:
    """The cost of `tokens` rounded up: never below the exact cost, for worst-case reservations."""
    if tokens < 0 or micros_per_million < 0:
        raise ValueError(f"tokens and price must be ≥ 0: {tokens}, {micros_per_million}")
    return -(-(tokens * micros_per_million) // TOKENS_PER_PRICE_UNIT)
