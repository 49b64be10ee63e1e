"""Prices from the maintained ``genai-prices`` table, with per-model overrides from settings.

Money is integer micro-dollars. A price of $X per million tokens is exactly X micro-dollars
per token, so costs are computed in Decimal and rounded up once per request: never under-bill,
and the rounding error is below one micro-dollar per request.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache

from genai_prices import Usage, data_snapshot
from genai_prices.types import ModelPrice, TieredPrices

from app.config import FineTunableModel, ModelPriceOverride

MICROS_PER_DOLLAR = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """What a call consumed. ``cached`` is part of ``prompt`` and ``reasoning`` part of ``completion``,
    exactly as OpenAI reports them, so neither is ever counted twice."""

    prompt: int = 0
    cached: int = 0
    completion: int = 0
    reasoning: int = 0


_DATED = re.compile(r"-\d{4}-\d{2}-\d{2}$|-\d{4}$")


def base_of(model: str) -> str:
    """The base model of a fine-tuned one: ``ft:gpt-4o-mini-2024-07-18:org:suffix:id`` ->
    ``gpt-4o-mini-2024-07-18``; any other model is its own base."""
    return model.removeprefix("ft:").split(":", 1)[0] if model.startswith("ft:") else model


def fine_tunable(table: Mapping[str, FineTunableModel], model: str) -> FineTunableModel | None:
    """The fine-tuning entry of a base model, by its exact name, else its undated name
    (``gpt-4o-mini-2024-07-18`` -> ``gpt-4o-mini``)."""
    return table.get(model) or table.get(_DATED.sub("", model))


class PriceBook:
    def __init__(
        self,
        overrides: dict[str, ModelPriceOverride],
        fine_tunable: Mapping[str, FineTunableModel] | None = None,
    ) -> None:
        self._overrides = {name: _override_price(o) for name, o in overrides.items()}
        self._fine_tunable = fine_tunable or {}
        self._resolve = lru_cache(maxsize=1024)(self._lookup)
        self._window = lru_cache(maxsize=1024)(_context_window)

    def context_window(self, model: str) -> int | None:
        """The model's context window in tokens, when the price table knows it."""
        return self._window(model)

    def price_of(self, model: str) -> ModelPrice | None:
        return self._resolve(model)

    def is_priced(self, model: str) -> bool:
        return self.price_of(model) is not None

    def cost_micros(self, model: str, usage: TokenUsage) -> int:
        price = self.price_of(model)
        if price is None:
            raise KeyError(model)
        return cost_micros(price, usage)

    def worst_case_rates(self, model: str) -> tuple[Decimal, Decimal]:
        """(input, output) in micro-dollars per token, at the highest tier: an upper bound for
        reserving, exact for the usual flat prices."""
        price = self.price_of(model)
        if price is None:
            raise KeyError(model)
        rates = price.__dict__
        return _highest(rates.get("input_mtok")), _highest(rates.get("output_mtok"))

    def _lookup(self, model: str) -> ModelPrice | None:
        if model in self._overrides:
            return self._overrides[model]
        provider = next(p for p in data_snapshot.get_snapshot().providers if p.id == "openai")
        info = provider.find_model(model)
        if model.startswith("ft:"):
            # A fine-tuned model: the table's own ft: price, else its base model's fine-tuned
            # price from settings; never the base model's plain price, which is lower.
            if info is not None and info.id.startswith("ft:"):
                return info.get_prices(datetime.now(UTC))
            return self._fine_tuned_price(base_of(model))
        return info.get_prices(datetime.now(UTC)) if info is not None else None

    def _fine_tuned_price(self, base: str) -> ModelPrice | None:
        entry = fine_tunable(self._fine_tunable, base)
        if entry is None or entry.input_per_mtok is None:
            return None
        return ModelPrice(
            input_mtok=entry.input_per_mtok,
            cache_read_mtok=entry.cached_input_per_mtok,
            output_mtok=entry.output_per_mtok or Decimal(0),
        )


def _context_window(model: str) -> int | None:
    provider = next(p for p in data_snapshot.get_snapshot().providers if p.id == "openai")
    info = provider.find_model(model)
    window = getattr(info, "context_window", None)
    return window if isinstance(window, int) else None


def cost_micros(price: ModelPrice, usage: TokenUsage) -> int:
    if usage.prompt == 0 and usage.completion == 0:
        return 0
    cached = min(usage.cached, usage.prompt)
    fast = _simple_cost(price, usage.prompt, cached, usage.completion)
    if fast is not None:
        return fast
    kwargs: dict[str, int] = {"input_tokens": usage.prompt, "output_tokens": usage.completion}
    if cached and getattr(price, "cache_read_mtok", None) is not None:
        kwargs["cache_read_tokens"] = cached
    dollars = price.calc_price(Usage(**kwargs))["total_price"]
    return math.ceil(dollars * MICROS_PER_DOLLAR)


def _simple_cost(price: ModelPrice, prompt: int, cached: int, completion: int) -> int | None:
    """Flat per-token prices, the common case, computed directly: the library's general path
    (tiers, units registry) costs ~100 us, too much for every request. Returns None otherwise."""
    rates = price.__dict__
    if any(v is not None and k not in _SIMPLE_KEYS for k, v in rates.items()):
        return None
    in_rate, out_rate = rates.get("input_mtok"), rates.get("output_mtok")
    cache_rate = rates.get("cache_read_mtok")
    if not all(isinstance(r, Decimal) or r is None for r in (in_rate, out_rate, cache_rate)):
        return None
    if cache_rate is None:
        cache_rate, cached = in_rate, 0
    micros = (prompt - cached) * (in_rate or 0) + cached * (cache_rate or 0) + completion * (out_rate or 0)
    return math.ceil(micros)


# Keys that do not apply to a plain token call (per-search prices) do not disqualify the fast path.
_SIMPLE_KEYS = frozenset(
    {"input_mtok", "cache_read_mtok", "output_mtok", "web_searches_kcount", "storage_searches_kcount"}
)


def _highest(rate: object) -> Decimal:
    if isinstance(rate, Decimal):
        return rate
    if isinstance(rate, TieredPrices):
        return max([rate.base, *(tier.price for tier in rate.tiers)])
    return Decimal(0)


def _override_price(o: ModelPriceOverride) -> ModelPrice:
    return ModelPrice(
        input_mtok=o.input_per_mtok,
        cache_read_mtok=o.cached_input_per_mtok,
        output_mtok=o.output_per_mtok,
    )
