"""The Responses API end to end: the official SDK -> Tollgate -> the fake upstream."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable
from decimal import Decimal

import openai
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from app.kit.tokens import count_text, estimate_responses_prompt
from app.models import ResponseRecord, UsageRecord
from app.usage.pricing import PriceBook, TokenUsage
from tests.fixtures.live_server import LiveServer
from tests.fixtures.servers import PRICED_MODEL, Admin, Tenant, lease_count, settled, usage_rows

MODEL = "gpt-4o-mini"


async def test_create_answers_records_the_owner_and_bills_the_usage(
    tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine
) -> None:
    client = tenant.client(tollgate.url)
    raw = await client.responses.with_raw_response.create(
        model=MODEL, instructions="Be brief.", input="Say something.", extra_body={"mock": {"cached_tokens": 3}}
    )
    response = raw.parse()
    assert response.id.startswith("resp_") and response.status == "completed"
    assert response.output_text.startswith("This is a deterministic")
    assert response.usage is not None
    usage = response.usage

    [row] = await usage_rows(engine, tenant.key_id)
    assert row.request_id == raw.headers["x-request-id"]
    assert (row.endpoint, row.model, row.status, row.usage_source) == ("responses", MODEL, "ok", "upstream")
    assert (row.prompt_tokens, row.cached_tokens, row.completion_tokens) == (
        usage.input_tokens,
        3,
        usage.output_tokens,
    )
    tokens = TokenUsage(prompt=usage.input_tokens, cached=3, completion=usage.output_tokens)
    assert row.cost_micros == PriceBook({}).cost_micros(MODEL, tokens) > 0
    assert (await client.responses.retrieve(response.id)).output_text == response.output_text


async def test_reasoning_and_cached_tokens_are_priced_once(
    tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine
) -> None:
    client = tenant.client(tollgate.url)
    response = await client.responses.create(
        model=PRICED_MODEL, input="Think.", extra_body={"mock": {"cached_tokens": 4, "reasoning_tokens": 50}}
    )
    assert response.usage is not None
    prompt, output = response.usage.input_tokens, response.usage.output_tokens
    [row] = await usage_rows(engine, tenant.key_id)
    assert (row.reasoning_tokens, row.completion_tokens) == (50, output)
    # $2/M uncached input, $0.5/M cached input, $8/M output (reasoning is part of output).
    assert row.cost_micros == math.ceil((prompt - 4) * Decimal(2) + 4 * Decimal("0.5") + output * Decimal(8))


async def test_streamed_create_relays_every_event_and_bills_the_completed_usage(
    tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine
) -> None:
    client = tenant.client(tollgate.url)
    async with client.responses.stream(model=MODEL, input="Stream please.") as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_response()
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds.count("response.output_text.delta") == 12
    assert kinds[-1] == "response.completed"
    assert final.usage is not None
    [row] = await usage_rows(engine, tenant.key_id)
    assert (row.endpoint, row.status, row.usage_source) == ("responses", "ok", "upstream")
    assert (row.prompt_tokens, row.completion_tokens) == (final.usage.input_tokens, final.usage.output_tokens)
    # Owned once the stream has ended: the caller can read it back.
    assert (await client.responses.retrieve(final.id)).id == final.id

    plain = await client.responses.create(model=MODEL, input="Again.", stream=True)
    events = [event async for event in plain]
    assert events[-1].type == "response.completed"
    assert len(await usage_rows(engine, tenant.key_id)) == 2


async def test_a_dropped_stream_is_billed_by_estimate_and_its_lease_released(
    tollgate: LiveServer, admin: Admin, engine: AsyncEngine
) -> None:
    tenant = await admin.tenant()
    budget_id = await admin.budget("key", tenant.key_id, "1")
    client = tenant.client(tollgate.url)
    stream = await client.responses.create(
        model=MODEL, input="Break.", stream=True, extra_body={"mock": {"drop_after": 4}}
    )
    deltas: list[str] = []

    async def consume() -> None:
        async for event in stream:
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)

    with pytest.raises(openai.APIError) as caught:
        await consume()
    assert "upstream stream failed" in caught.value.message
    assert len(deltas) == 4
    [row] = await _rows(engine, tenant.key_id, 1)
    assert (row.status, row.usage_source) == ("stream_error", "estimated")
    assert row.completion_tokens == count_text(MODEL, "".join(deltas)) > 0
    assert row.prompt_tokens == estimate_responses_prompt(MODEL, {"input": "Break."})
    assert await lease_count(engine, tenant.key_id) == 0
    state = await admin.budget_state(budget_id)
    assert (state["spent_micros"], state["reserved_micros"]) == (row.cost_micros, 0)


async def test_a_client_that_hangs_up_closes_upstream_and_is_billed_for_what_it_got(
    tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine, mock_app: Starlette
) -> None:
    client = tenant.client(tollgate.url)
    stream = await client.responses.create(
        model=MODEL, input="Long one.", stream=True, extra_body={"mock": {"words": 400, "chunk_delay_ms": 20}}
    )
    deltas = 0
    async for event in stream:
        deltas += event.type == "response.output_text.delta"
        if deltas == 5:
            break
    await stream.close()

    [row] = await _rows(engine, tenant.key_id, 1)
    assert (row.status, row.usage_source) == ("client_disconnected", "estimated")
    assert 4 <= row.completion_tokens < 400
    for _ in range(100):
        if mock_app.state.open_streams == 0:
            break
        await asyncio.sleep(0.05)
    assert mock_app.state.open_streams == 0, "the upstream stream must be closed when the client leaves"
    # The caller saw the response's id, so it is the caller's (upstream may keep the partial answer).
    assert await _owned_count(engine, tenant.user_id, wait_for=1) == 1


async def test_a_stream_without_usage_is_counted_with_tiktoken(
    tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine
) -> None:
    client = tenant.client(tollgate.url)
    async with client.responses.stream(model=MODEL, input="x", extra_body={"mock": {"no_usage": True}}) as stream:
        final = await stream.get_final_response()
    [row] = await _rows(engine, tenant.key_id, 1)
    assert (row.status, row.usage_source) == ("ok", "estimated")
    assert row.completion_tokens == count_text(MODEL, final.output_text) > 0


async def test_previous_response_id_must_be_the_callers_own(
    tollgate: LiveServer, admin: Admin, engine: AsyncEngine, mock_app: Starlette
) -> None:
    alice, bob = await admin.tenant(), await admin.tenant()
    a = alice.client(tollgate.url)
    first = await a.responses.create(model=MODEL, input="Remember 7.")
    second = await a.responses.create(model=MODEL, input="What number?", previous_response_id=first.id)
    assert second.previous_response_id == first.id
    assert first.usage is not None and second.usage is not None
    # Upstream carried the first exchange as context.
    assert second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens

    before = len(mock_app.state.requests)
    with pytest.raises(openai.NotFoundError):
        await bob.client(tollgate.url).responses.create(model=MODEL, input="Hi", previous_response_id=first.id)
    assert len(mock_app.state.requests) == before
    assert await usage_rows(engine, bob.key_id) == []
    assert await lease_count(engine, bob.key_id) == 0


async def test_the_reservation_covers_the_previous_responses_context(
    tollgate: LiveServer, admin: Admin, mock_app: Starlette
) -> None:
    """With a budget, Tollgate caps the output at what the budget can still pay for after the
    prompt; the prompt of a chained call includes the previous exchange, so its cap is lower."""
    tenant = await admin.tenant()
    await admin.budget("key", tenant.key_id, "0.002")
    client = tenant.client(tollgate.url)
    first = await client.responses.create(model=PRICED_MODEL, input="word " * 150, extra_body={"mock": {"words": 3}})
    caps = []
    for previous in (None, first.id):
        await settled()  # each call reserves all the budget can pay for until it is settled
        await client.responses.create(
            model=PRICED_MODEL, input="Go on.", previous_response_id=previous, extra_body={"mock": {"words": 1}}
        )
        caps.append(mock_app.state.requests[-1].body["max_output_tokens"])
    assert caps[0] - caps[1] >= 150 * 2 / 8, caps  # 150+ input tokens at $2/M, output at $8/M


async def test_other_users_response_ids_are_404_on_every_route(tollgate: LiveServer, admin: Admin) -> None:
    alice, bob = await admin.tenant(), await admin.tenant()
    a, b = alice.client(tollgate.url), bob.client(tollgate.url)
    response = await a.responses.create(model=MODEL, input="private")

    calls: list[Awaitable[object]] = [
        b.responses.retrieve(response.id),
        b.responses.input_items.list(response.id),
        b.responses.cancel(response.id),
        b.responses.delete(response.id),
        b.responses.retrieve("resp_unknown"),
    ]
    for call in calls:
        with pytest.raises(openai.NotFoundError):
            await call
    # Alice still has it, and her own routes work.
    items = await a.responses.input_items.list(response.id)
    assert [item.type for item in items.data] == ["message"]
    with pytest.raises(openai.BadRequestError):  # upstream cancels background responses only
        await a.responses.cancel(response.id)
    await a.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError):
        await a.responses.retrieve(response.id)


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"background": True}, "background"),
        ({"tools": [{"type": "web_search"}]}, "tools[0]"),
        ({"input": 5}, "input"),
        ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file_x"}]}]}, "input[0]"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"model": ""}, "model"),
        ({"previous_response_id": "resp_x", "conversation": "conv_x"}, "previous_response_id"),
    ],
)
async def test_bad_input_is_a_400_and_costs_nothing(
    tollgate: LiveServer,
    tenant: Tenant,
    engine: AsyncEngine,
    mock_app: Starlette,
    extra: dict[str, object],
    param: str,
) -> None:
    before = len(mock_app.state.requests)
    body: dict[str, object] = {"model": MODEL, "input": "hi", **extra}
    async with tenant.http(tollgate.url) as http:
        answer = await http.post("/v1/responses", json=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == param
    assert len(mock_app.state.requests) == before
    assert await usage_rows(engine, tenant.key_id) == []


async def test_a_budget_refusal_leaves_nothing_written(
    tollgate: LiveServer, admin: Admin, engine: AsyncEngine, mock_app: Starlette
) -> None:
    tenant = await admin.tenant()
    await admin.budget("key", tenant.key_id, "0.000001")
    before = len(mock_app.state.requests)
    with pytest.raises(openai.RateLimitError) as caught:
        await tenant.client(tollgate.url).responses.create(model=PRICED_MODEL, input="hello " * 50)
    assert caught.value.code == "key_budget_exceeded"
    assert len(mock_app.state.requests) == before
    assert await usage_rows(engine, tenant.key_id) == []
    assert await lease_count(engine, tenant.key_id) == 0
    assert await _owned_count(engine, tenant.user_id) == 0


async def _rows(engine: AsyncEngine, key_id: str, count: int) -> list[UsageRecord]:
    """Streams settle just after the last byte, so give the rows a moment to land."""
    for _ in range(100):
        rows = await usage_rows(engine, key_id)
        if len(rows) >= count:
            return rows
        await asyncio.sleep(0.02)
    return await usage_rows(engine, key_id)


async def _owned_count(engine: AsyncEngine, user_id: str, wait_for: int = 0) -> int:
    """The user's recorded responses; written once a call has settled, so allow a moment."""
    statement = select(func.count()).select_from(ResponseRecord).where(ResponseRecord.user_id == user_id)
    for _ in range(100):
        async with engine.connect() as conn:
            count = int((await conn.execute(statement)).scalar_one())
        if count >= wait_for:
            return count
        await asyncio.sleep(0.02)
    return count
