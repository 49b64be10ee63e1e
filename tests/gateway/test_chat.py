"""Chat completions end to end: the official SDK -> Tollgate -> the fake upstream, over real sockets."""

from __future__ import annotations

import asyncio
import math
from decimal import Decimal

import openai
import pytest
from genai_prices import Usage, calc_price
from openai.types.chat import ChatCompletionMessageParam
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from app.kit.tokens import count_chat_prompt, count_text
from app.mock_upstream.chat import count_chat_prompt_tokens
from app.models import UsageRecord
from tests.fixtures.live_server import LiveServer
from tests.fixtures.servers import PRICED_MODEL, Tenant, usage_rows

MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Say something."},
]


async def test_chat_returns_upstream_answer_and_records_usage(
    tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine
) -> None:
    client = tenant.client(tollgate.url)
    raw = await client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    completion = raw.parse()

    assert completion.choices[0].message.content
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == count_chat_prompt_tokens(MESSAGES)
    [row] = await usage_rows(engine, tenant.key_id)
    assert row.request_id == raw.headers["x-request-id"]
    assert (row.prompt_tokens, row.completion_tokens) == (
        completion.usage.prompt_tokens,
        completion.usage.completion_tokens,
    )
    assert (row.status, row.http_status, row.usage_source) == ("ok", 200, "upstream")
    assert (row.endpoint, row.model, row.user_id) == ("chat.completions", "gpt-4o-mini", tenant.user_id)
    assert row.upstream_request_id and row.upstream_request_id.startswith("req_mock_")
    assert row.latency_ms >= 0


async def test_cost_matches_the_price_table_to_the_micro_dollar(
    tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine
) -> None:
    client = tenant.client(tollgate.url)
    completion = await client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, extra_body={"mock": {"cached_tokens": 10, "words": 40}}
    )
    assert completion.usage is not None
    usage = completion.usage
    expected = calc_price(
        Usage(input_tokens=usage.prompt_tokens, cache_read_tokens=10, output_tokens=usage.completion_tokens),
        "gpt-4o-mini",
        provider_id="openai",
    ).total_price
    [row] = await usage_rows(engine, tenant.key_id)
    assert row.cached_tokens == 10
    assert row.cost_micros == math.ceil(expected * 1_000_000)


async def test_override_prices_cached_and_reasoning_tokens_exactly(
    tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine
) -> None:
    client = tenant.client(tollgate.url)
    completion = await client.chat.completions.create(
        model=PRICED_MODEL,
        messages=MESSAGES,
        extra_body={"mock": {"cached_tokens": 4, "reasoning_tokens": 100}},
    )
    assert completion.usage is not None
    prompt, completion_tokens = completion.usage.prompt_tokens, completion.usage.completion_tokens
    [row] = await usage_rows(engine, tenant.key_id)
    # $2/M uncached input, $0.5/M cached input, $8/M output (reasoning is part of output, billed once).
    exact = (prompt - 4) * Decimal(2) + 4 * Decimal("0.5") + completion_tokens * Decimal(8)
    assert row.reasoning_tokens == 100
    assert row.completion_tokens == completion_tokens
    assert row.cost_micros == math.ceil(exact)


async def test_body_is_forwarded_with_unknown_fields(tollgate: LiveServer, tenant: Tenant, mock_app: Starlette) -> None:
    client = tenant.client(tollgate.url)
    await client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, extra_body={"future_field": {"nested": [1, 2]}, "seed": 7}
    )
    sent = mock_app.state.requests[-1].body
    assert sent["future_field"] == {"nested": [1, 2]}
    assert sent["seed"] == 7
    assert "stream_options" not in sent


async def test_stream_without_include_usage_hides_the_usage_chunk(
    tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine, mock_app: Starlette
) -> None:
    client = tenant.client(tollgate.url)
    stream = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    chunks = [chunk async for chunk in stream]

    assert mock_app.state.requests[-1].body["stream_options"] == {"include_usage": True}
    assert all(chunk.choices for chunk in chunks), "the usage-only chunk must not reach this client"
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    [row] = await _settled(engine, tenant.key_id)
    assert (row.status, row.usage_source) == ("ok", "upstream")
    assert row.prompt_tokens == count_chat_prompt_tokens(MESSAGES)
    assert row.completion_tokens == count_text("gpt-4o-mini", text)


async def test_stream_with_include_usage_gets_the_usage_chunk(
    tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine
) -> None:
    client = tenant.client(tollgate.url)
    stream = await client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    [row] = await _settled(engine, tenant.key_id)
    assert row.completion_tokens == chunks[-1].usage.completion_tokens
    assert row.status == "ok"


async def test_stream_without_usage_block_is_counted_with_tiktoken(
    tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine
) -> None:
    client = tenant.client(tollgate.url)
    stream = await client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_body={"mock": {"no_usage": True}}
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    [row] = await _settled(engine, tenant.key_id)
    assert row.usage_source == "estimated"
    assert row.prompt_tokens == count_chat_prompt("gpt-4o-mini", MESSAGES)
    assert row.completion_tokens == count_text("gpt-4o-mini", text)
    assert row.cost_micros > 0


async def test_client_disconnect_closes_upstream_and_bills_what_was_relayed(
    tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine, mock_app: Starlette
) -> None:
    client = tenant.client(tollgate.url)
    stream = await client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        extra_body={"mock": {"words": 400, "chunk_delay_ms": 20}},
    )
    received = 0
    async for _chunk in stream:
        received += 1
        if received == 5:
            break
    await stream.close()

    [row] = await _settled(engine, tenant.key_id)
    assert row.status == "client_disconnected"
    assert row.usage_source == "estimated"
    assert row.prompt_tokens == count_chat_prompt("gpt-4o-mini", MESSAGES)
    assert 4 <= row.completion_tokens < 400
    assert row.cost_micros > 0
    for _ in range(100):
        if mock_app.state.open_streams == 0:
            break
        await asyncio.sleep(0.05)
    assert mock_app.state.open_streams == 0, "the upstream stream must be closed when the client leaves"


async def test_upstream_failure_mid_stream_becomes_an_sse_error_event(
    tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine
) -> None:
    client = tenant.client(tollgate.url)
    stream = await client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_body={"mock": {"drop_after": 3}}
    )
    received: list[str] = []

    async def consume() -> None:
        async for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")

    with pytest.raises(openai.APIError) as caught:
        await consume()
    assert "upstream stream failed" in caught.value.message
    [row] = await _settled(engine, tenant.key_id)
    assert row.status == "stream_error"
    assert row.usage_source == "estimated"
    assert row.completion_tokens == count_text("gpt-4o-mini", "".join(received)) > 0


async def _settled(engine: AsyncEngine, key_id: str) -> list[UsageRecord]:
    """Streams settle just after the last byte, so give the row a moment to land."""
    for _ in range(100):
        rows = await usage_rows(engine, key_id)
        if rows:
            return list(rows)
        await asyncio.sleep(0.02)
    return []
