"""Cost of a call, its worst case, and the prompt-token bound without a tokenizer."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from capstan.finops.costing import (
    IMAGE_TOKENS,
    Cost,
    Usage,
    cost_of,
    estimate_prompt_tokens,
    worst_case,
)
from capstan.finops.money import tokens_cost
from capstan.finops.prices import Price

RATE = st.integers(min_value=0, max_value=200_000_000)  # up to $200 per million tokens
OPTIONAL_RATE = st.none() | RATE
COUNT = st.integers(min_value=0, max_value=2_000_000)


def _price(**rates: int | None) -> Price:
    fields: dict[str, Any] = {
        "input": 3_000_000,
        "output": 15_000_000,
        "cached_input": 300_000,
        "cache_write": 3_750_000,
        "reasoning": None,
        "per_image": None,
        "per_audio_second": None,
    }
    fields.update(rates)
    return Price(effective_from=datetime(2026, 1, 1, tzinfo=UTC), source="override", **fields)


prices = st.builds(
    _price,
    input=RATE,
    output=RATE,
    cached_input=OPTIONAL_RATE,
    cache_write=OPTIONAL_RATE,
    reasoning=OPTIONAL_RATE,
    per_image=OPTIONAL_RATE,
    per_audio_second=OPTIONAL_RATE,
)


@st.composite
def usages_within(draw: st.DrawFn, max_prompt: int, max_completion: int) -> Usage:
    """Any consistent usage with prompt ≤ max_prompt and completion ≤ max_completion."""
    prompt = draw(st.integers(min_value=0, max_value=max_prompt))
    cached = draw(st.integers(min_value=0, max_value=prompt))
    writes = draw(st.integers(min_value=0, max_value=prompt - cached))
    completion = draw(st.integers(min_value=0, max_value=max_completion))
    reasoning = draw(st.integers(min_value=0, max_value=completion))
    return Usage(prompt, completion, cached, writes, reasoning)


any_usage = st.builds(
    Usage,
    prompt_tokens=st.integers(-10, 10**6),
    completion_tokens=st.integers(-10, 10**6),
    cached_tokens=st.integers(-10, 10**6),
    cache_write_tokens=st.integers(-10, 10**6),
    reasoning_tokens=st.integers(-10, 10**6),
    images=st.integers(-2, 20),
    audio_seconds=st.integers(-2, 600),
)


def test_cost_of_charges_each_bucket_at_its_rate() -> None:
    usage = Usage(
        prompt_tokens=10_000, completion_tokens=2_000, cached_tokens=6_000, cache_write_tokens=1_000
    )
    cost = cost_of(usage, _price(reasoning=20_000_000))
    assert (cost.input, cost.cache_read, cost.cache_write) == (9_000, 1_800, 3_750)
    assert (cost.output, cost.reasoning, cost.other) == (30_000, 0, 0)
    assert cost.total == 44_550


def test_cost_of_charges_reasoning_out_of_the_completion() -> None:
    usage = Usage(prompt_tokens=0, completion_tokens=1_000, reasoning_tokens=400)
    cost = cost_of(usage, _price(reasoning=20_000_000))
    assert (cost.output, cost.reasoning) == (9_000, 8_000)


@given(any_usage, prices)
def test_cost_total_is_exactly_the_sum_of_its_buckets(usage: Usage, price: Price) -> None:
    cost = cost_of(usage, price)
    buckets = (cost.input, cost.cache_read, cost.cache_write, cost.output, cost.reasoning)
    assert cost.total == sum(buckets) + cost.other


@given(usages_within(10**6, 10**6))
def test_cost_charges_every_token_once(usage: Usage) -> None:
    flat = _price(input=1_000_000, output=1_000_000, cached_input=None, cache_write=None)
    cost = cost_of(usage, flat)
    assert cost.total == usage.prompt_tokens + usage.completion_tokens


def test_cost_total_cannot_be_given() -> None:
    with pytest.raises(TypeError):
        Cost(1, 0, 0, 0, 0, 0, total=5)  # type: ignore[call-arg]


def test_images_and_audio_cost_their_unit_price() -> None:
    usage = Usage(prompt_tokens=0, completion_tokens=0, images=3, audio_seconds=60)
    cost = cost_of(usage, _price(per_image=40_000, per_audio_second=100))
    assert cost.other == 3 * 40_000 + 60 * 100


def test_images_without_a_unit_price_cost_nothing_extra() -> None:
    usage = Usage(prompt_tokens=1_000, completion_tokens=0, images=3)
    assert cost_of(usage, _price()).other == 0


def test_estimated_flag_is_carried_to_the_cost() -> None:
    usage = Usage(prompt_tokens=10, completion_tokens=10)
    assert cost_of(usage, _price(), estimated=True).estimated
    assert not cost_of(usage, _price()).estimated


def test_consistent_usage_is_kept_as_given() -> None:
    usage = Usage(100, 50, cached_tokens=60, cache_write_tokens=40, reasoning_tokens=50)
    assert not usage.clipped
    assert (usage.cached_tokens, usage.cache_write_tokens, usage.reasoning_tokens) == (60, 40, 50)


def test_usage_clips_cache_counts_beyond_the_prompt_and_says_so() -> None:
    usage = Usage(prompt_tokens=100, completion_tokens=0, cached_tokens=80, cache_write_tokens=50)
    assert usage.clipped
    assert (usage.prompt_tokens, usage.cached_tokens, usage.cache_write_tokens) == (100, 80, 20)


def test_usage_clips_reasoning_beyond_the_completion() -> None:
    usage = Usage(prompt_tokens=0, completion_tokens=10, reasoning_tokens=30)
    assert usage.clipped
    assert usage.reasoning_tokens == 10


def test_usage_clips_negative_counts_to_zero() -> None:
    usage = Usage(prompt_tokens=-5, completion_tokens=3, images=-1)
    assert usage.clipped
    assert (usage.prompt_tokens, usage.completion_tokens, usage.images) == (0, 3, 0)


def test_cost_of_clipped_usage_is_marked_estimated() -> None:
    usage = Usage(prompt_tokens=10, completion_tokens=0, cached_tokens=20)
    assert cost_of(usage, _price()).estimated


@given(any_usage)
def test_usage_parts_never_exceed_their_totals(usage: Usage) -> None:
    assert 0 <= usage.cached_tokens + usage.cache_write_tokens <= usage.prompt_tokens
    assert 0 <= usage.reasoning_tokens <= usage.completion_tokens
    assert min(usage.cached_tokens, usage.cache_write_tokens, usage.images) >= 0


@st.composite
def bounds_and_usage(draw: st.DrawFn) -> tuple[int, int, int, int, Usage]:
    max_prompt = draw(COUNT)
    max_completion = draw(COUNT)
    images = draw(st.integers(0, 10))
    seconds = draw(st.integers(0, 3_600))
    usage = draw(usages_within(max_prompt, max_completion))
    spent = Usage(
        usage.prompt_tokens,
        usage.completion_tokens,
        usage.cached_tokens,
        usage.cache_write_tokens,
        usage.reasoning_tokens,
        images=draw(st.integers(0, images)),
        audio_seconds=draw(st.integers(0, seconds)),
    )
    return max_prompt, max_completion, images, seconds, spent


@given(bounds_and_usage(), prices)
def test_worst_case_is_never_below_the_cost_of_a_usage_within_bounds(
    bounds: tuple[int, int, int, int, Usage], price: Price
) -> None:
    max_prompt, max_completion, images, seconds, usage = bounds
    reserved = worst_case(max_prompt, max_completion, price, images=images, audio_seconds=seconds)
    assert cost_of(usage, price).total <= reserved


@given(COUNT, COUNT, prices)
def test_worst_case_exceeds_the_dearest_split_by_at_most_a_few_micros(
    max_prompt: int, max_completion: int, price: Price
) -> None:
    rate_in = max(price.input, price.cached_input_rate(), price.cache_write_rate())
    rate_out = max(price.output, price.reasoning_rate())
    dearest = tokens_cost(max_prompt, rate_in) + tokens_cost(max_completion, rate_out)
    assert worst_case(max_prompt, max_completion, price) - dearest <= 4


def test_worst_case_covers_every_bucket_rounding_up() -> None:
    # Five buckets of 1.5 µ$ each: half-even rounds each to 2 µ$, 10 in all, where the exact
    # cost is 7.5 µ$ and the two ceilings alone (5 + 3) would fall short by 2.
    price = _price(input=3, output=3, cached_input=3, cache_write=3, reasoning=3)
    usage = Usage(1_500_000, 1_000_000, 500_000, 500_000, 500_000)
    assert cost_of(usage, price).total == 10
    assert worst_case(1_500_000, 1_000_000, price) == 10


# -- estimate_prompt_tokens ------------------------------------------------------------------


def _chat(*contents: Any, **extra: Any) -> dict[str, Any]:
    messages = [{"role": "user", "content": content} for content in contents]
    return {"model": "gpt-5", "messages": messages, **extra}


@given(st.lists(st.text(), min_size=1, max_size=5))
def test_estimate_is_at_least_the_utf8_bytes_of_the_text(texts: list[str]) -> None:
    body = _chat(*texts)
    assert estimate_prompt_tokens(body) >= sum(len(text.encode("utf-8")) for text in texts)


@given(st.lists(st.text(), min_size=1, max_size=5), st.text())
def test_estimate_counts_anthropic_text_blocks_and_system(texts: list[str], system: str) -> None:
    blocks = [{"type": "text", "text": text} for text in texts]
    body = {
        "model": "claude-sonnet-4-5",
        "system": system,
        "messages": [_chat(blocks)["messages"][0]],
    }
    expected = sum(len(text.encode("utf-8")) for text in [*texts, system])
    assert estimate_prompt_tokens(body) >= expected


def test_estimate_counts_tool_definitions_as_their_json() -> None:
    tool = {
        "type": "function",
        "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
    }
    without = estimate_prompt_tokens(_chat("hi"))
    with_tool = estimate_prompt_tokens(_chat("hi", tools=[tool]))
    assert with_tool - without >= len(json.dumps([tool], separators=(",", ":")))


def test_estimate_adds_an_allowance_for_vendor_defined_tools() -> None:
    custom = estimate_prompt_tokens(_chat("hi", tools=[{"type": "custom", "name": "x"}]))
    builtin = estimate_prompt_tokens(_chat("hi", tools=[{"type": "bash_2025", "name": "x"}]))
    assert builtin - custom >= 1_000


def test_estimate_counts_an_image_by_its_allowance_not_its_base64() -> None:
    data = base64.b64encode(bytes(1_000_000)).decode()
    part = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}}
    estimate = estimate_prompt_tokens(_chat([{"type": "text", "text": "what is it?"}, part]))
    assert IMAGE_TOKENS <= estimate < IMAGE_TOKENS + 1_000


def test_estimate_takes_a_tighter_image_allowance() -> None:
    part = {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
    assert estimate_prompt_tokens(_chat([part]), image_tokens=1_600) < 2_000


def test_estimate_counts_an_image_inside_a_tool_result_by_its_allowance() -> None:
    data = base64.b64encode(bytes(300_000)).decode()
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}}
    result = {"type": "tool_result", "tool_use_id": "t1", "content": [image]}
    estimate = estimate_prompt_tokens(_chat([result]), image_tokens=1_600)
    assert 1_600 <= estimate < 2_000


def test_estimate_still_counts_the_text_beside_an_image() -> None:
    image = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    body = _chat([image], "z" * 5_000, [{"type": "text", "text": "w" * 3_000}])
    assert estimate_prompt_tokens(body, image_tokens=100) >= 8_100


def test_estimate_counts_tool_calls_and_tool_results() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "x" * 500}}
    body = {
        "messages": [
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "y" * 700},
        ]
    }
    assert estimate_prompt_tokens(body) >= 1_200


def test_estimate_survives_deeply_nested_content() -> None:
    nested: Any = "deep"
    for _ in range(5_000):
        nested = [nested]
    assert estimate_prompt_tokens(_chat(nested)) > 5_000


def test_estimate_survives_lone_surrogates() -> None:
    assert estimate_prompt_tokens(_chat("\ud800")) >= 3


def test_estimate_of_a_body_without_messages_is_small_but_positive() -> None:
    assert 0 < estimate_prompt_tokens({"model": "gpt-5"}) < 100
