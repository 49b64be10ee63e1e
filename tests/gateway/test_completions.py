"""Legacy completions and moderations end to end: the SDK -> Tollgate -> the fake upstream."""

from __future__ import annotations

import math
from decimal import Decimal

import openai
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from app.kit.tokens import count_text
from tests.fixtures.live_server import LiveServer
from tests.fixtures.servers import Admin, Tenant, lease_count, usage_rows

MODEL = "gpt-3.5-turbo-instruct"  # $1.50 per million input tokens, $2 per million output tokens
PROMPT = "Write a tagline for an ice cream shop."


def by_hand(prompt: int, completion: int) -> int:
    return math.ceil(prompt * Decimal("1.5") + completion * Decimal(2))


async def test_completion_is_relayed_and_billed_from_upstream_usage(
    tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine
) -> None:
    client = tenant.client(tollgate.url)
    raw = await client.completions.with_raw_response.create(model=MODEL, prompt=PROMPT, max_tokens=50)
    completion = raw.parse()

    assert completion.choices[0].text
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == count_text(MODEL, PROMPT)
    [row] = await usage_rows(engine, tenant.key_id)
    assert row.request_id == raw.headers["x-request-id"]
    assert (row.endpoint, row.model, row.status, row.usage_source) == ("completions", MODEL, "ok", "upstream")
    assert (row.prompt_tokens, row.completion_tokens) == (
        completion.usage.prompt_tokens,
        completion.usage.completion_tokens,
    )
    assert row.cost_micros == by_hand(completion.usage.prompt_tokens, completion.usage.completion_tokens) > 0
    assert row.unit is None and row.units is None


async def test_several_prompts_and_choices_are_billed_together(
    tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine
) -> None:
    client = tenant.client(tollgate.url)
    completion = await client.completions.create(model=MODEL, prompt=["one", "two"], n=2, max_tokens=5)
    assert len(completion.choices) == 4
    assert completion.usage is not None
    [row] = await usage_rows(engine, tenant.key_id)
    assert row.completion_tokens == completion.usage.completion_tokens
    assert row.cost_micros == by_hand(completion.usage.prompt_tokens, completion.usage.completion_tokens)


async def test_stream_asks_for_usage_and_hides_it_from_a_client_that_did_not(
    tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine, mock_app: Starlette
) -> None:
    client = tenant.client(tollgate.url)
    stream = await client.completions.create(model=MODEL, prompt=PROMPT, stream=True)
    chunks = [chunk async for chunk in stream]

    assert mock_app.state.requests[-1].body["stream_options"] == {"include_usage": True}
    assert all(chunk.choices for chunk in chunks), "the usage-only chunk must not reach this client"
    text = "".join(c.choices[0].text for c in chunks)
    [row] = await usage_rows(engine, tenant.key_id)
    assert (row.status, row.usage_source) == ("ok", "upstream")
    assert row.completion_tokens == count_text(MODEL, text) > 0
    assert row.cost_micros == by_hand(count_text(MODEL, PROMPT), row.completion_tokens)


async def test_stream_with_include_usage_gets_the_usage_chunk(tollgate: LiveServer, tenant: Tenant) -> None:
    client = tenant.client(tollgate.url)
    stream = await client.completions.create(
        model=MODEL, prompt=PROMPT, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == count_text(MODEL, PROMPT)


async def test_stream_without_upstream_usage_is_counted_with_tiktoken(
    tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine
) -> None:
    client = tenant.client(tollgate.url)
    stream = await client.completions.create(
        model=MODEL, prompt=PROMPT, stream=True, extra_body={"mock": {"no_usage": True}}
    )
    text = "".join([c.choices[0].text async for c in stream])
    [row] = await usage_rows(engine, tenant.key_id)
    assert row.usage_source == "estimated"
    assert (row.prompt_tokens, row.completion_tokens) == (count_text(MODEL, PROMPT), count_text(MODEL, text))


async def test_budget_caps_the_output_at_openais_default_of_16(
    tollgate: LiveServer, admin: Admin, mock_app: Starlette
) -> None:
    tenant = await admin.tenant()
    await admin.budget("key", tenant.key_id, "10")
    await tenant.client(tollgate.url).completions.create(model=MODEL, prompt=PROMPT)
    assert mock_app.state.requests[-1].body["max_tokens"] == 16


async def test_budget_refusal_is_a_429_and_nothing_is_billed(
    tollgate: LiveServer, admin: Admin, engine: AsyncEngine, mock_app: Starlette
) -> None:
    tenant = await admin.tenant()
    await admin.budget("key", tenant.key_id, "0.000001")
    before = len(mock_app.state.requests)
    with pytest.raises(openai.RateLimitError) as caught:
        await tenant.client(tollgate.url).completions.create(model=MODEL, prompt=PROMPT)
    assert caught.value.code == "key_budget_exceeded"
    assert caught.value.response.headers["x-should-retry"] == "false"
    assert len(mock_app.state.requests) == before
    assert await usage_rows(engine, tenant.key_id) == []
    assert await lease_count(engine, tenant.key_id) == 0


@pytest.mark.parametrize(
    ("body", "param"),
    [({"model": MODEL}, "prompt"), ({"model": MODEL, "prompt": [1, "a"]}, "prompt"), ({"prompt": "x"}, "model")],
)
async def test_bad_input_is_a_400_and_nothing_is_billed(
    tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine, body: dict[str, object], param: str
) -> None:
    async with tenant.http(tollgate.url) as http:
        response = await http.post("/v1/completions", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert await usage_rows(engine, tenant.key_id) == []


async def test_a_model_the_key_may_not_use_is_a_404(tollgate: LiveServer, admin: Admin, engine: AsyncEngine) -> None:
    tenant = await admin.tenant(models=["gpt-4o-mini"])
    with pytest.raises(openai.NotFoundError) as caught:
        await tenant.client(tollgate.url).completions.create(model=MODEL, prompt=PROMPT)
    assert caught.value.code == "model_not_found"
    assert await usage_rows(engine, tenant.key_id) == []


# Moderations: free upstream, but authenticated, model-checked and on the ledger at cost 0.


async def test_moderation_is_relayed_and_recorded_at_no_cost(
    tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine
) -> None:
    client = tenant.client(tollgate.url)
    raw = await client.moderations.with_raw_response.create(input=["I will hurt you", "hello"])
    moderation = raw.parse()

    assert [r.flagged for r in moderation.results] == [True, False]
    assert moderation.results[0].categories.violence is True
    [row] = await usage_rows(engine, tenant.key_id)
    assert row.request_id == raw.headers["x-request-id"]
    assert (row.endpoint, row.model, row.status, row.cost_micros) == (
        "moderations",
        "omni-moderation-latest",
        "ok",
        0,
    )
    model = "omni-moderation-latest"
    assert row.prompt_tokens == count_text(model, "I will hurt you") + count_text(model, "hello")


async def test_moderation_passes_even_an_exhausted_budget(
    tollgate: LiveServer, admin: Admin, engine: AsyncEngine
) -> None:
    tenant = await admin.tenant()
    await admin.budget("key", tenant.key_id, "0")
    moderation = await tenant.client(tollgate.url).moderations.create(model="omni-moderation-latest", input="hi")
    assert moderation.results[0].flagged is False
    [row] = await usage_rows(engine, tenant.key_id)
    assert row.cost_micros == 0
    assert await lease_count(engine, tenant.key_id) == 0


async def test_moderation_with_a_model_the_key_may_not_use_is_a_404(
    tollgate: LiveServer, admin: Admin, engine: AsyncEngine
) -> None:
    tenant = await admin.tenant(models=["gpt-4o-mini"])
    with pytest.raises(openai.NotFoundError) as caught:
        await tenant.client(tollgate.url).moderations.create(input="hi")  # the default model is not allowed
    assert caught.value.code == "model_not_found"
    assert await usage_rows(engine, tenant.key_id) == []


async def test_moderation_bad_input_is_a_400_and_nothing_is_recorded(
    tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine
) -> None:
    async with tenant.http(tollgate.url) as http:
        response = await http.post("/v1/moderations", json={"input": 42})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "input"
    assert await usage_rows(engine, tenant.key_id) == []
