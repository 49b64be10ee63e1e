"""Cost arithmetic: integer micro-dollars, each token priced once, never rounded down."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
from genai_prices import Usage
from hypothesis import given
from hypothesis import strategies as st

from app.config import ModelPriceOverride
from app.usage.pricing import PriceBook, TokenUsage

BOOK = PriceBook(
    {
        "flat": ModelPriceOverride(
            input_per_mtok=Decimal("2"), cached_input_per_mtok=Decimal("0.5"), output_per_mtok=8
        ),
        "no-cache-rate": ModelPriceOverride(input_per_mtok=Decimal("1"), output_per_mtok=Decimal("3")),
    }
)


def test_override_wins_and_unknown_models_have_no_price() -> None:
    assert BOOK.cost_micros("flat", TokenUsage(prompt=1000, cached=200, completion=100)) == 800 * 2 + 200 // 2 + 800
    assert BOOK.price_of("no-such-model-anywhere") is None
    assert BOOK.is_priced("gpt-4o-mini")
    assert BOOK.is_priced("gpt-4o-mini-2024-07-18"), "dated snapshots resolve to their family"


def test_cached_tokens_without_a_cached_rate_cost_the_input_rate() -> None:
    assert BOOK.cost_micros("no-cache-rate", TokenUsage(prompt=1000, cached=400)) == 1000


def test_fractions_of_a_micro_dollar_round_up() -> None:
    # One gpt-4o-mini input token is $0.15 per million: 0.15 micro-dollars, billed as 1.
    assert BOOK.cost_micros("gpt-4o-mini", TokenUsage(prompt=1)) == 1
    assert BOOK.cost_micros("gpt-4o-mini", TokenUsage()) == 0


@pytest.mark.parametrize("model", ["gpt-4o-mini", "gpt-4o", "gpt-4.1-nano", "o4-mini", "text-embedding-3-small"])
def test_fast_path_agrees_with_the_price_library(model: str) -> None:
    price = BOOK.price_of(model)
    assert price is not None
    usage = TokenUsage(prompt=123_457, cached=2_345, completion=6_789, reasoning=1_000)
    cache = usage.cached if getattr(price, "cache_read_mtok", None) is not None else 0
    library = price.calc_price(
        Usage(input_tokens=usage.prompt, cache_read_tokens=cache, output_tokens=usage.completion)
    )
    assert BOOK.cost_micros(model, usage) == math.ceil(library["total_price"] * 1_000_000)


tokens = st.integers(min_value=0, max_value=10_000_000)


@given(prompt=tokens, cached=tokens, completion=tokens, reasoning=tokens)
def test_cost_is_never_negative_and_no_token_is_counted_twice(
    prompt: int, cached: int, completion: int, reasoning: int
) -> None:
    usage = TokenUsage(prompt=prompt, cached=cached, completion=completion, reasoning=min(reasoning, completion))
    cost = BOOK.cost_micros("flat", usage)
    effective_cached = min(cached, prompt)
    exact = (prompt - effective_cached) * 2 + Decimal(effective_cached) / 2 + completion * 8
    assert cost == math.ceil(exact) >= 0
    # Reasoning tokens are inside completion tokens: changing them alone never changes the cost.
    assert BOOK.cost_micros("flat", TokenUsage(prompt, cached, completion, 0)) == cost
