"""Batches through Tollgate with the official SDK: reserved at batch prices from the input file,
followed until upstream finishes, settled from the output file's usage, owned per user."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any

import openai
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from app.config import BatchSettings, Settings
from app.db import create_sessionmaker
from app.kit.db_types import utcnow
from app.main import create_app
from app.models import Batch, BudgetLease, File
from app.spend.service import SpendService
from app.usage.pricing import PriceBook
from tests.fixtures.live_server import LiveServer
from tests.fixtures.servers import PRICED_MODEL, Admin, Tenant, usage_rows

# PRICED_MODEL costs $2 / $8 per million tokens: 2 and 8 micro-dollars a token; 1 and 4 at batch prices.


def _line(custom_id: str, cap: int | None = None, content: str = "hi", **body: Any) -> dict[str, Any]:
    request: dict[str, Any] = {"model": PRICED_MODEL, "messages": [{"role": "user", "content": content}], **body}
    if cap is not None:
        request["max_tokens"] = cap
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": request}


def _jsonl(*lines: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


TWO_LINES = _jsonl(_line("a", 100), _line("b", 50))
# Each line's prompt: 3 (reply priming) + 3 (one message) + 1 ("user") + 1 ("hi") = 8 tokens.
# Worst case: 16 prompt tokens x 2 + 150 output tokens x 8 = 1,232 micro-dollars; half at batch prices.
TWO_LINES_RESERVED = 616


async def _batch_file(client: openai.AsyncOpenAI, content: bytes = TWO_LINES, purpose: Any = "batch") -> str:
    return (await client.files.create(file=("requests.jsonl", content), purpose=purpose)).id


async def _create(client: openai.AsyncOpenAI, file_id: str, **extra: Any) -> Any:
    return await client.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h", **extra
    )


def _output_cost(content: bytes) -> tuple[int, int, int]:
    """(prompt tokens, completion tokens, cost at batch prices) of an output file, by hand."""
    prompt = completion = 0
    for raw in content.splitlines():
        usage = json.loads(raw)["response"]["body"]["usage"]
        prompt, completion = prompt + usage["prompt_tokens"], completion + usage["completion_tokens"]
    return prompt, completion, math.ceil((prompt * 2 + completion * 8) / 2)


async def _batch_rows(engine: AsyncEngine, user_id: str) -> list[Batch]:
    async with engine.connect() as conn:
        result = await conn.execute(select(Batch.__table__).where(Batch.user_id == user_id))
        return [Batch(**row._mapping) for row in result]


async def test_reserved_at_batch_prices_then_settled_from_the_output_file(
    tollgate: LiveServer, settings: Settings, admin: Admin, tenant: Tenant, engine: AsyncEngine
) -> None:
    budget = await admin.budget("user", tenant.user_id, "10")
    client = tenant.client(tollgate.url)
    batch = await _create(client, await _batch_file(client), metadata={"job": "nightly"})
    assert (batch.status, batch.metadata) == ("validating", {"job": "nightly"})
    state = await admin.budget_state(budget)
    assert (state["reserved_micros"], state["spent_micros"]) == (TWO_LINES_RESERVED, 0)
    async with engine.connect() as conn:
        lease = (await conn.execute(select(BudgetLease.__table__).where(BudgetLease.api_key_id == tenant.key_id))).one()
    # The lease lives as long as the batch (24 h window plus the grace), not a request's minute.
    assert lease.expires_at > utcnow() + timedelta(hours=24)
    # The reaper (any replica's) leaves it alone: nothing is charged early.
    reaper = SpendService(create_sessionmaker(engine), PriceBook({}), settings.spend)
    await reaper.reap_once()
    assert await usage_rows(engine, tenant.key_id) == []
    assert (await admin.budget_state(budget))["reserved_micros"] == TWO_LINES_RESERVED

    assert (await client.batches.retrieve(batch.id)).status == "in_progress"
    done = await client.batches.retrieve(batch.id)
    assert done.status == "completed" and done.output_file_id is not None
    assert done.request_counts is not None and done.request_counts.completed == 2

    output = (await client.files.content(done.output_file_id)).content
    prompt, completion, cost = _output_cost(output)
    [row] = await usage_rows(engine, tenant.key_id)
    assert (row.endpoint, row.model, row.status, row.upstream_request_id) == ("batches", PRICED_MODEL, "ok", batch.id)
    assert (row.prompt_tokens, row.completion_tokens, row.cost_micros) == (prompt, completion, cost)
    assert prompt == 16 and 0 < cost < TWO_LINES_RESERVED
    state = await admin.budget_state(budget)
    assert (state["reserved_micros"], state["spent_micros"]) == (0, cost)
    # Retrieving again settles nothing twice.
    assert (await client.batches.retrieve(batch.id)).status == "completed"
    assert len(await usage_rows(engine, tenant.key_id)) == 1
    [listed] = (await client.batches.list()).data
    assert (listed.id, listed.status) == (batch.id, "completed")
    assert {f.id for f in (await client.files.list()).data} >= {done.output_file_id}


async def test_the_poller_settles_a_batch_nobody_retrieves(
    settings: Settings, admin: Admin, tenant: Tenant, engine: AsyncEngine
) -> None:
    fast = settings.model_copy(update={"batches": BatchSettings(poll_interval_s=0.05)})
    with LiveServer(create_app(fast)) as server:
        client = tenant.client(server.url)
        batch = await _create(client, await _batch_file(client))
        deadline = time.monotonic() + 30
        while not await usage_rows(engine, tenant.key_id):
            assert time.monotonic() < deadline, "the poller did not settle the batch"
            await asyncio.sleep(0.05)
        [stored] = await _batch_rows(engine, tenant.user_id)
        output = (await client.files.content(stored.snapshot["output_file_id"])).content
    [row] = await usage_rows(engine, tenant.key_id)
    assert (stored.id, stored.status, stored.settled_at is not None) == (batch.id, "completed", True)
    async with engine.connect() as conn:
        owner = await conn.scalar(select(File.user_id).where(File.id == stored.snapshot["output_file_id"]))
    assert owner == tenant.user_id
    assert row.cost_micros == _output_cost(output)[2]


async def test_clients_retrieving_at_once_settle_a_batch_once(
    tollgate: LiveServer, admin: Admin, tenant: Tenant, engine: AsyncEngine
) -> None:
    budget = await admin.budget("user", tenant.user_id, "10")
    clients = [tenant.client(tollgate.url) for _ in range(6)]
    batch = await _create(clients[0], await _batch_file(clients[0]))
    await clients[0].batches.retrieve(batch.id)  # in progress; the next look finishes it
    seen = await asyncio.gather(*(c.batches.retrieve(batch.id) for c in clients))
    assert {b.status for b in seen} == {"completed"}
    [row] = await usage_rows(engine, tenant.key_id)
    state = await admin.budget_state(budget)
    assert (state["spent_micros"], state["reserved_micros"]) == (row.cost_micros, 0)


async def test_an_embeddings_batch_is_billed_for_its_input_only(
    tollgate: LiveServer, admin: Admin, tenant: Tenant, engine: AsyncEngine
) -> None:
    budget = await admin.budget("user", tenant.user_id, "10")
    client = tenant.client(tollgate.url)
    lines = [
        {
            "custom_id": f"e{i}",
            "method": "POST",
            "url": "/v1/embeddings",
            "body": {"model": PRICED_MODEL, "input": text},
        }
        for i, text in enumerate(["hello world", "the quick brown fox"])
    ]
    file_id = await _batch_file(client, _jsonl(*lines))
    batch = await client.batches.create(input_file_id=file_id, endpoint="/v1/embeddings", completion_window="24h")
    # o200k: "hello world" is 2 tokens, "the quick brown fox" 4: 6 x 2 micro-dollars, halved.
    assert (await admin.budget_state(budget))["reserved_micros"] == 6
    await client.batches.retrieve(batch.id)
    done = await client.batches.retrieve(batch.id)
    assert done.output_file_id is not None
    output = (await client.files.content(done.output_file_id)).content
    prompt = sum(json.loads(line)["response"]["body"]["usage"]["prompt_tokens"] for line in output.splitlines())
    [row] = await usage_rows(engine, tenant.key_id)
    assert (row.prompt_tokens, row.completion_tokens, row.cost_micros) == (prompt, 0, prompt)
    assert (await admin.budget_state(budget))["spent_micros"] == prompt


async def test_expired_and_cancelled_batches_bill_what_they_finished(
    tollgate: LiveServer, admin: Admin, tenant: Tenant, engine: AsyncEngine
) -> None:
    budget = await admin.budget("user", tenant.user_id, "10")
    client = tenant.client(tollgate.url)
    four = _jsonl(*(_line(f"r{i}", 20) for i in range(4)))
    expiring = await _create(client, await _batch_file(client, four), metadata={"mock_outcome": "expired"})
    cancelled = await _create(client, await _batch_file(client, four))
    await client.batches.retrieve(cancelled.id)  # in progress
    assert (await client.batches.cancel(cancelled.id)).status == "cancelling"
    for batch_id in (expiring.id, expiring.id, cancelled.id):
        last = await client.batches.retrieve(batch_id)
    assert last.status == "cancelled"
    assert (await client.batches.retrieve(expiring.id)).status == "expired"
    rows = {r.upstream_request_id: r for r in await usage_rows(engine, tenant.key_id)}
    for batch_id, status in ((expiring.id, "expired"), (cancelled.id, "cancelled")):
        batch = await client.batches.retrieve(batch_id)
        assert batch.output_file_id and batch.error_file_id
        assert batch.request_counts is not None and batch.request_counts.completed == 2
        expected = _output_cost((await client.files.content(batch.output_file_id)).content)[2]
        assert (rows[batch_id].cost_micros, rows[batch_id].error_code) == (expected, status)
        errors = (await client.files.content(batch.error_file_id)).content
        assert len(errors.splitlines()) == 2
    state = await admin.budget_state(budget)
    assert state["reserved_micros"] == 0
    assert state["spent_micros"] == sum(r.cost_micros for r in rows.values())


async def test_a_failed_batch_releases_its_reservation(
    tollgate: LiveServer, admin: Admin, tenant: Tenant, engine: AsyncEngine
) -> None:
    budget = await admin.budget("user", tenant.user_id, "10")
    client = tenant.client(tollgate.url)
    batch = await _create(client, await _batch_file(client), metadata={"mock_outcome": "failed"})
    assert (await admin.budget_state(budget))["reserved_micros"] == TWO_LINES_RESERVED
    failed = await client.batches.retrieve(batch.id)
    assert failed.status == "failed" and failed.errors is not None
    [row] = await usage_rows(engine, tenant.key_id)
    assert (row.cost_micros, row.error_code) == (0, "failed")
    state = await admin.budget_state(budget)
    assert (state["reserved_micros"], state["spent_micros"]) == (0, 0)


async def test_refused_when_the_budget_cannot_cover_the_worst_case(
    tollgate: LiveServer, admin: Admin, tenant: Tenant, engine: AsyncEngine, mock_app: Starlette
) -> None:
    budget = await admin.budget("user", tenant.user_id, "0.0006")  # 600 < 616 micro-dollars
    client = tenant.client(tollgate.url)
    file_id = await _batch_file(client)
    before = len(getattr(mock_app.state, "batches", {}))
    with pytest.raises(openai.RateLimitError) as caught:
        await _create(client, file_id)
    assert caught.value.code == "user_budget_exceeded"
    assert caught.value.response.headers["x-should-retry"] == "false"
    assert len(getattr(mock_app.state, "batches", {})) == before
    assert await _batch_rows(engine, tenant.user_id) == []
    state = await admin.budget_state(budget)
    assert (state["reserved_micros"], state["spent_micros"]) == (0, 0)
    # One line fits: 8 x 2 + 100 x 8 = 816, 408 at batch prices.
    one = await _create(client, await _batch_file(client, _jsonl(_line("a", 100))))
    assert (await admin.budget_state(budget))["reserved_micros"] == 408
    assert one.id in mock_app.state.batches
    await client.batches.retrieve(one.id)  # run to its end, so its hold is not left behind
    assert (await client.batches.retrieve(one.id)).status == "completed"
    assert (await admin.budget_state(budget))["reserved_micros"] == 0


async def test_lists_show_only_the_callers_batches(tollgate: LiveServer, admin: Admin) -> None:
    alice, bob = await admin.tenant(), await admin.tenant()
    a, b = alice.client(tollgate.url), bob.client(tollgate.url)
    hold = {"mock_polls": "100"}
    ids = [(await _create(a, await _batch_file(a), metadata=hold)).id for _ in range(3)]
    bobs = (await _create(b, await _batch_file(b), metadata=hold)).id
    assert [x.id for x in (await a.batches.list()).data] == ids[::-1]
    assert [x.id for x in (await b.batches.list()).data] == [bobs]
    first = await a.batches.list(limit=2)
    assert ([x.id for x in first.data], first.has_more) == (ids[:0:-1], True)
    assert [x.id async for x in a.batches.list(limit=2)] == ids[::-1]  # the SDK follows `after`
    with pytest.raises(openai.BadRequestError):
        await a.batches.list(after=bobs)


async def test_other_users_batches_and_files_are_404(
    tollgate: LiveServer, admin: Admin, engine: AsyncEngine, mock_app: Starlette
) -> None:
    alice, bob = await admin.tenant(), await admin.tenant()
    a, b = alice.client(tollgate.url), bob.client(tollgate.url)
    alices_file = await _batch_file(a)
    batch = await _create(a, alices_file)
    await a.batches.retrieve(batch.id)
    done = await a.batches.retrieve(batch.id)
    assert done.output_file_id is not None
    before = len(mock_app.state.batches)
    calls: list[Awaitable[object]] = [
        b.batches.retrieve(batch.id),
        b.batches.cancel(batch.id),
        b.batches.retrieve("batch_doesnotexist"),
        _create(b, alices_file),
        b.files.content(done.output_file_id),
        b.files.retrieve(done.output_file_id),
    ]
    for call in calls:
        with pytest.raises(openai.NotFoundError):
            await call
    assert len(mock_app.state.batches) == before
    assert await _batch_rows(engine, bob.user_id) == []
    assert await usage_rows(engine, bob.key_id) == []
    assert (await a.batches.retrieve(batch.id)).status == "completed"


@pytest.mark.parametrize(
    ("content", "purpose", "endpoint", "message"),
    [
        (TWO_LINES + b'{"custom_id": "c", "method": "POST", \n', "batch", "/v1/chat/completions", "Line 3"),
        (_jsonl(_line("a"), {**_line("b"), "url": "/v1/embeddings"}), "batch", "/v1/chat/completions", "Line 2"),
        (_jsonl(_line("a"), _line("a")), "batch", "/v1/chat/completions", "repeats custom_id"),
        (_jsonl(_line("a"), {**_line("b"), "body": {"model": "gpt-4o", "messages": []}}), "batch", None, "one"),
        (TWO_LINES, "user_data", "/v1/chat/completions", "purpose 'batch'"),
        (TWO_LINES, "batch", "/v1/images/generations", "/v1/images/generations"),
        (b"\n\n", "batch", "/v1/chat/completions", "no requests"),
        (_jsonl({**_line("a"), "body": {"model": "mystery-model", "messages": []}}), "batch", None, "no price"),
        (_jsonl(_line("a", 0)), "batch", None, "Line 1 of the input file has an output cap"),
    ],
    ids=[
        "malformed-json",
        "wrong-url",
        "duplicate-id",
        "two-models",
        "wrong-purpose",
        "bad-endpoint",
        "empty",
        "unpriced-model",
        "zero-cap",
    ],
)
async def test_bad_input_is_refused_and_writes_nothing(
    tollgate: LiveServer,
    admin: Admin,
    tenant: Tenant,
    engine: AsyncEngine,
    mock_app: Starlette,
    content: bytes,
    purpose: Any,
    endpoint: str | None,
    message: str,
) -> None:
    budget = await admin.budget("user", tenant.user_id, "10")
    client = tenant.client(tollgate.url)
    file_id = await _batch_file(client, content, purpose)
    before = len(getattr(mock_app.state, "batches", {}))
    with pytest.raises(openai.BadRequestError) as caught:
        await client.batches.create(
            input_file_id=file_id,
            endpoint=endpoint or "/v1/chat/completions",  # type: ignore[arg-type]
            completion_window="24h",
        )
    assert message in caught.value.message
    assert len(getattr(mock_app.state, "batches", {})) == before
    assert await _batch_rows(engine, tenant.user_id) == []
    assert await usage_rows(engine, tenant.key_id) == []
    assert (await admin.budget_state(budget))["reserved_micros"] == 0


async def test_a_model_the_key_may_not_use_is_404(
    tollgate: LiveServer, admin: Admin, engine: AsyncEngine, mock_app: Starlette
) -> None:
    limited = await admin.tenant(models=["gpt-4o-mini"])
    client = limited.client(tollgate.url)
    file_id = await _batch_file(client)
    before = len(getattr(mock_app.state, "batches", {}))
    with pytest.raises(openai.NotFoundError) as caught:
        await _create(client, file_id)
    assert caught.value.code == "model_not_found"
    assert len(getattr(mock_app.state, "batches", {})) == before
    assert await _batch_rows(engine, limited.user_id) == []
