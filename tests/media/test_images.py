"""Images end to end: generations (JSON), edits and variations (multipart), priced per image
or by tokens, reserved before the call and settled after it."""

from __future__ import annotations

import json
import math
from decimal import Decimal

import openai
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from app.mock_upstream.chat import count_tokens
from app.mock_upstream.media import FAKE_PNG_B64, IMAGE_OUTPUT_TOKENS, INPUT_IMAGE_TOKENS
from tests.fixtures.live_server import LiveServer
from tests.fixtures.servers import Admin, Tenant, lease_count, usage_rows

PNG = ("cat.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 2000, "image/png")


def gpt_image_cost(text_in: int, image_in: int, output: int) -> int:
    """gpt-image-1: $5/M text input, $10/M image input, $40/M output tokens."""
    return math.ceil(text_in * Decimal(5) + image_in * Decimal(10) + output * Decimal(40))


async def test_dall_e_3_is_billed_per_image_by_quality_and_size(
    tollgate: LiveServer, admin: Admin, engine: AsyncEngine
) -> None:
    tenant = await admin.tenant()
    budget_id = await admin.budget("key", tenant.key_id, "1")
    raw = await tenant.client(tollgate.url).images.with_raw_response.generate(
        model="dall-e-3", prompt="a lighthouse", quality="hd", size="1024x1792"
    )
    images = raw.parse()
    assert images.data and images.data[0].url and images.data[0].revised_prompt
    [row] = await usage_rows(engine, tenant.key_id)
    assert row.request_id == raw.headers["x-request-id"]
    assert (row.endpoint, row.model, row.status) == ("images.generations", "dall-e-3", "ok")
    assert (row.cost_micros, row.unit, row.units) == (120_000, "image", 1)
    state = await admin.budget_state(budget_id)
    assert (state["spent_micros"], state["reserved_micros"]) == (120_000, 0)


async def test_dall_e_2_bills_every_image(tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine) -> None:
    images = await tenant.client(tollgate.url).images.generate(
        model="dall-e-2", prompt="a cat", n=3, size="256x256", response_format="b64_json"
    )
    assert [d.b64_json for d in images.data or []] == [FAKE_PNG_B64] * 3
    [row] = await usage_rows(engine, tenant.key_id)
    assert (row.cost_micros, row.units) == (3 * 16_000, 3)


async def test_gpt_image_is_billed_from_the_usage_block(
    tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine
) -> None:
    images = await tenant.client(tollgate.url).images.generate(
        model="gpt-image-1", prompt="a red bicycle", quality="low", size="1024x1024"
    )
    assert images.usage is not None
    output = IMAGE_OUTPUT_TOKENS["low"]
    [row] = await usage_rows(engine, tenant.key_id)
    assert (row.prompt_tokens, row.completion_tokens, row.usage_source) == (
        count_tokens("a red bicycle"),
        output,
        "upstream",
    )
    assert row.cost_micros == gpt_image_cost(count_tokens("a red bicycle"), 0, output)
    assert (row.unit, row.units) == ("image", 1)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "dall-e-3", "prompt": "x", "size": "256x256"}, "size"),
        ({"model": "dall-e-3", "prompt": "x", "n": 2}, "n"),
        ({"model": "dall-e-2"}, "prompt"),
        ({"model": "dall-e-2", "prompt": "x", "stream": True}, "stream"),
    ],
)
async def test_bad_image_requests_are_400_and_not_billed(
    tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine, mock_app: Starlette, body: dict[str, object], param: str
) -> None:
    before = len(mock_app.state.requests)
    async with tenant.http(tollgate.url) as http:
        response = await http.post("/v1/images/generations", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
    assert len(mock_app.state.requests) == before
    assert await usage_rows(engine, tenant.key_id) == []


async def test_budget_that_cannot_pay_for_n_images_refuses_with_429(
    tollgate: LiveServer, admin: Admin, engine: AsyncEngine, mock_app: Starlette
) -> None:
    tenant = await admin.tenant()
    await admin.budget("key", tenant.key_id, "0.05")  # two dall-e-2 images would be $0.04; three $0.06
    client = tenant.client(tollgate.url)
    before = len(mock_app.state.requests)
    with pytest.raises(openai.RateLimitError) as caught:
        await client.images.generate(model="dall-e-2", prompt="x", n=3)
    assert caught.value.code == "key_budget_exceeded"
    assert len(mock_app.state.requests) == before
    assert await usage_rows(engine, tenant.key_id) == []
    assert await lease_count(engine, tenant.key_id) == 0


async def test_image_model_the_key_may_not_use_is_a_404(
    tollgate: LiveServer, admin: Admin, engine: AsyncEngine
) -> None:
    tenant = await admin.tenant(models=["dall-e-2"])
    with pytest.raises(openai.NotFoundError) as caught:
        await tenant.client(tollgate.url).images.generate(model="dall-e-3", prompt="x")
    assert caught.value.code == "model_not_found"
    assert await usage_rows(engine, tenant.key_id) == []


async def test_malformed_upstream_answer_is_a_502_billed_at_the_quote(
    tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine
) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        await tenant.client(tollgate.url).images.generate(
            model="dall-e-2", prompt="x", extra_body={"mock": {"malformed": True}}
        )
    assert caught.value.status_code == 502
    [row] = await usage_rows(engine, tenant.key_id)
    assert (row.status, row.cost_micros, row.usage_source) == ("upstream_error", 20_000, "estimated")


# Edits and variations: multipart uploads forwarded as sent.


async def test_variations_upload_is_forwarded_and_billed_per_image(
    tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine, mock_app: Starlette
) -> None:
    images = await tenant.client(tollgate.url).images.create_variation(image=PNG, n=2, size="512x512")
    assert len(images.data or []) == 2
    sent = mock_app.state.requests[-1]
    assert sent.path == "/v1/images/variations"
    assert sent.headers["content-type"].startswith("multipart/form-data; boundary=")
    [row] = await usage_rows(engine, tenant.key_id)
    assert (row.endpoint, row.model, row.cost_micros, row.units) == ("images.variations", "dall-e-2", 36_000, 2)


async def test_gpt_image_edit_bills_input_images_and_output_tokens(
    tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine
) -> None:
    prompt = "add a hat"
    await tenant.client(tollgate.url).images.edit(model="gpt-image-1", image=[PNG, PNG], prompt=prompt)
    [row] = await usage_rows(engine, tenant.key_id)
    image_in, output = 2 * INPUT_IMAGE_TOKENS, IMAGE_OUTPUT_TOKENS["medium"]
    assert row.endpoint == "images.edits"
    assert row.prompt_tokens == count_tokens(prompt) + image_in
    assert row.cost_micros == gpt_image_cost(count_tokens(prompt), image_in, output)


async def test_upload_without_an_image_is_a_400(tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine) -> None:
    async with tenant.http(tollgate.url) as http:
        response = await http.post("/v1/images/variations", files={"model": (None, "dall-e-2")})
        not_multipart = await http.post("/v1/images/variations", json={"model": "dall-e-2"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "image"
    assert not_multipart.status_code == 400
    assert await usage_rows(engine, tenant.key_id) == []


async def test_upload_budget_refusal_and_forbidden_model(
    tollgate: LiveServer, admin: Admin, engine: AsyncEngine
) -> None:
    poor = await admin.tenant()
    await admin.budget("key", poor.key_id, "0.01")
    with pytest.raises(openai.RateLimitError):
        await poor.client(tollgate.url).images.create_variation(image=PNG)
    limited = await admin.tenant(models=["dall-e-3"])
    with pytest.raises(openai.NotFoundError):
        await limited.client(tollgate.url).images.create_variation(image=PNG, model="dall-e-2")
    assert await usage_rows(engine, poor.key_id) == []
    assert await usage_rows(engine, limited.key_id) == []


async def test_mock_controls_reach_a_multipart_upstream(
    tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine
) -> None:
    await tenant.client(tollgate.url).images.edit(
        model="gpt-image-1", image=PNG, prompt="x", extra_body={"mock": json.dumps({"no_usage": True})}
    )
    [row] = await usage_rows(engine, tenant.key_id)
    assert row.usage_source == "estimated"
    # Without usage, the quote is billed: the prompt, one input image at its bound, and the
    # dearest output ("auto" quality and size: high at 1024x1536).
    assert row.cost_micros == gpt_image_cost(count_tokens("x"), 6_240, 6_240)
