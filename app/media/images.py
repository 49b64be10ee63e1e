"""Image generations (JSON), edits and variations (multipart uploads).

Priced per image by model, quality and size (dall-e-2, dall-e-3: ``DEFAULT_IMAGE_PRICES``), or
by tokens for the GPT image models, from the ``usage`` block of the response. The reservation
is n images at their price, or, for GPT image models, the prompt plus n images at the output
tokens of the dearest quality and size the request allows (plus a bound per input image for
edits).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.responses import Response

from app.errors import InvalidRequest
from app.gateway.service import CallContext
from app.kit.spooled_form import Upload
from app.kit.tokens import count_text
from app.media.pricing import IMAGE_OUTPUT_TOKENS
from app.media.schemas import ImageRequest, parse_image
from app.media.service import Billed, MediaCalls, parse_json
from app.models.usage_record import UNIT_IMAGE
from app.usage.pricing import TokenUsage

# An upper bound of the input tokens one uploaded image costs a GPT image model (an edit at
# high input fidelity); the actual count comes from the response's usage block.
INPUT_IMAGE_TOKENS_BOUND = 6_240
IMAGE_FIELDS = ("image", "image[]")


@dataclass(frozen=True, slots=True)
class ImageQuote:
    bound: int  # micro-dollars reserved
    prompt_tokens: int
    per_image: int | None  # micro-dollars, for models priced by the image


class ImageCalls(MediaCalls):
    async def generate(self, ctx: CallContext, raw: bytes, body: dict[str, Any]) -> Response:
        req = parse_image(body)
        self.authorize(ctx.principal, req.model)
        quote = self.quote(req)
        ctx, admission = await self.admit(ctx, req.model, quote.bound, quote.prompt_tokens)
        reply = await self.gateway.send(
            ctx, admission, self.gateway.upstream.request("POST", "/images/generations", raw, model=req.model)
        )
        parsed = parse_json(reply.content)
        if parsed is None:
            raise await self.malformed(ctx, admission, reply, quote.bound)
        return await self.settle_reply(ctx, admission, reply, self.bill(req, quote, parsed))

    async def upload(self, ctx: CallContext, upload: Upload, path: str) -> Response:
        """Edits (``path`` /images/edits) and variations (/images/variations)."""
        images = [f for f in upload.files if f.field in IMAGE_FIELDS]
        if not images:
            raise InvalidRequest("An image file is required.", param="image", code="missing_required_parameter")
        req = parse_image(upload.fields, needs_prompt=path == "/images/edits")
        self.authorize(ctx.principal, req.model)
        quote = self.quote(req, input_images=len(images))
        ctx, admission = await self.admit(ctx, req.model, quote.bound, quote.prompt_tokens)
        call = self.gateway.upstream.upload(path, upload.chunks(), upload.content_type, upload.size, model=req.model)
        reply = await self.gateway.send(ctx, admission, call)
        parsed = parse_json(reply.content)
        if parsed is None:
            raise await self.malformed(ctx, admission, reply, quote.bound)
        return await self.settle_reply(ctx, admission, reply, self.bill(req, quote, parsed))

    def quote(self, req: ImageRequest, input_images: int = 0) -> ImageQuote:
        if self.prices.is_per_image(req.model):
            # "auto" is standard for DALL-E models, as OpenAI documents it.
            quality = "standard" if req.quality == "auto" else req.quality
            price = self.prices.image_micros(req.model, quality, req.size)
            if price is None:
                raise InvalidRequest(
                    f"'{req.model}' does not offer quality '{quality}' at size '{req.size}'.", param="size"
                )
            return ImageQuote(req.n * price, 0, price)
        prompt = count_text(req.model, req.prompt)
        input_image_tokens = input_images * INPUT_IMAGE_TOKENS_BOUND
        bound = self.prices.cost(
            req.model,
            input_tokens=prompt + input_image_tokens,
            input_image_tokens=input_image_tokens,
            output_tokens=req.n * _output_tokens_bound(req.quality, req.size),
        )
        return ImageQuote(bound, prompt, None)

    def bill(self, req: ImageRequest, quote: ImageQuote, parsed: dict[str, Any]) -> Billed:
        data = parsed.get("data")
        count = len(data) if isinstance(data, list) else 0
        units = (UNIT_IMAGE, count)
        if quote.per_image is not None:
            # The response names the quality and size it used, when it does; else the request's.
            quality, size = parsed.get("quality"), parsed.get("size")
            price = None
            if isinstance(quality, str) and isinstance(size, str):
                price = self.prices.image_micros(req.model, quality, size)
            return Billed(count * (price or quote.per_image), units=units, estimated=False)
        usage = parsed.get("usage")
        if not isinstance(usage, dict):
            return Billed(quote.bound, TokenUsage(prompt=quote.prompt_tokens), units, estimated=True)
        details = usage.get("input_tokens_details") or {}
        prompt, output = int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)
        image_in = int(details.get("image_tokens") or 0) if isinstance(details, dict) else 0
        cost = self.prices.cost(req.model, input_tokens=prompt, input_image_tokens=image_in, output_tokens=output)
        return Billed(cost, TokenUsage(prompt=prompt, completion=output), units, estimated=False)


def _output_tokens_bound(quality: str, size: str) -> int:
    qualities = [quality] if quality in IMAGE_OUTPUT_TOKENS else list(IMAGE_OUTPUT_TOKENS)
    tokens = [IMAGE_OUTPUT_TOKENS[q].get(size) for q in qualities]
    known = [t for t in tokens if t is not None]
    # An unlisted size ("auto", or a new one) is reserved at the largest known image.
    return max(known) if known else max(max(t.values()) for t in IMAGE_OUTPUT_TOKENS.values())
