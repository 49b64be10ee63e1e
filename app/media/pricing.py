"""Prices of media calls, in integer micro-dollars.

The maintained ``genai-prices`` table knows the token-priced image models (gpt-image-1), speech
by the character (tts-1, tts-1-hd) and by the token (gpt-4o-mini-tts), transcription by the hour
of audio (whisper-1) and by the token (gpt-4o-transcribe). It has no per-image prices, so those
(dall-e-2, dall-e-3) come from OpenAI's price page, below, overridable per model with
``TOLLGATE_IMAGE_PRICES``.
"""

from __future__ import annotations

import math
import warnings
from decimal import Decimal

from genai_prices import Usage
from genai_prices.types import ModelPrice

from app.usage.pricing import MICROS_PER_DOLLAR, PriceBook

# Dollars per image, keyed "quality/size" (OpenAI's price page, 2026-11).
DEFAULT_IMAGE_PRICES: dict[str, dict[str, Decimal]] = {
    "dall-e-2": {
        "standard/256x256": Decimal("0.016"),
        "standard/512x512": Decimal("0.018"),
        "standard/1024x1024": Decimal("0.020"),
    },
    "dall-e-3": {
        "standard/1024x1024": Decimal("0.040"),
        "standard/1024x1792": Decimal("0.080"),
        "standard/1792x1024": Decimal("0.080"),
        "hd/1024x1024": Decimal("0.080"),
        "hd/1024x1792": Decimal("0.120"),
        "hd/1792x1024": Decimal("0.120"),
    },
}
# Output tokens of one image from a token-priced image model, by quality and size (OpenAI's
# image generation guide). "auto" is reserved at the dearest choice.
IMAGE_OUTPUT_TOKENS: dict[str, dict[str, int]] = {
    "low": {"1024x1024": 272, "1024x1536": 408, "1536x1024": 400},
    "medium": {"1024x1024": 1056, "1024x1536": 1584, "1536x1024": 1568},
    "high": {"1024x1024": 4160, "1024x1536": 6240, "1536x1024": 6208},
}


class MediaPrices:
    def __init__(self, book: PriceBook, image_prices: dict[str, dict[str, Decimal]]) -> None:
        self.book = book
        self.per_image = {**DEFAULT_IMAGE_PRICES, **image_prices}

    def is_per_image(self, model: str) -> bool:
        return model in self.per_image

    def image_micros(self, model: str, quality: str, size: str) -> int | None:
        """One image's price, or None for a quality and size the model is not priced at."""
        dollars = self.per_image.get(model, {}).get(f"{quality}/{size}")
        return None if dollars is None else math.ceil(dollars * MICROS_PER_DOLLAR)

    def table_price(self, model: str) -> ModelPrice | None:
        """The model's row in the maintained price table (overrides included)."""
        return self.book.price_of(model)

    def cost(self, model: str, **counts: int | Decimal) -> int:
        """What the counts (genai-prices usage keys: ``input_tokens``, ``output_tokens``,
        ``input_image_tokens``, ``input_audio_tokens``, ``input_characters``, ``audio_seconds``...)
        cost at the model's table price, rounded up once."""
        price = self.book.price_of(model)
        if price is None:
            raise KeyError(model)
        if not any(counts.values()):
            return 0
        with warnings.catch_warnings():
            # The library warns about usage keys its standard pricing does not know; every key
            # passed here is one of its own.
            warnings.simplefilter("ignore")
            dollars = price.calc_price(Usage(**counts))["total_price"]
        return math.ceil(dollars * MICROS_PER_DOLLAR)

    def rate(self, model: str, key: str) -> Decimal:
        """One price of the model's table row (e.g. ``output_mtok``), 0 when it has none."""
        price = self.book.price_of(model)
        value = getattr(price, key, None) if price is not None else None
        return value if isinstance(value, Decimal) else Decimal(0)
