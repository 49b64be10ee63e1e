"""Chat completions that continue one of the caller's threads (header X-Tollgate-Thread-Id)."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from tests.fixtures.live_server import LiveServer
from tests.fixtures.servers import PRICED_MODEL, Admin, Tenant, usage_rows


def _in(thread_id: str) -> dict[str, str]:
    return {"X-Tollgate-Thread-Id": thread_id}


async def _texts(client: openai.AsyncOpenAI, thread_id: str) -> list[tuple[str, str]]:
    messages = (await client.beta.threads.messages.list(thread_id, order="asc")).data
    return [(m.role, m.content[0].text.value) for m in messages]  # type: ignore[union-attr]


async def test_chat_continues_the_thread_and_stores_the_exchange(
    tollgate: LiveServer, tenant: Tenant, mock_app: Starlette
) -> None:
    client = tenant.client(tollgate.url)
    thread = await client.beta.threads.create(
        messages=[{"role": "user", "content": "My name is Ada."}, {"role": "assistant", "content": "Hello Ada."}]
    )
    completion = await client.chat.completions.create(
        model=PRICED_MODEL,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is my name?"}],
        extra_headers=_in(thread.id),
    )
    assert completion.object == "chat.completion" and completion.choices[0].message.content
    sent = mock_app.state.requests[-1].body["messages"]
    assert [(m["role"], m["content"]) for m in sent] == [
        ("system", "Be brief."),
        ("user", "My name is Ada."),
        ("assistant", "Hello Ada."),
        ("user", "What is my name?"),
    ]
    assert await _texts(client, thread.id) == [
        ("user", "My name is Ada."),
        ("assistant", "Hello Ada."),
        ("user", "What is my name?"),
        ("assistant", completion.choices[0].message.content),
    ]


async def test_streamed_chat_is_stored_once_the_stream_completes(tollgate: LiveServer, tenant: Tenant) -> None:
    client = tenant.client(tollgate.url)
    thread = await client.beta.threads.create()
    stream = await client.chat.completions.create(
        model=PRICED_MODEL,
        messages=[{"role": "user", "content": "Tell me something."}],
        stream=True,
        extra_headers=_in(thread.id),
    )
    answer = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert answer
    assert await _texts(client, thread.id) == [("user", "Tell me something."), ("assistant", answer)]


async def test_a_failed_call_leaves_the_thread_as_it_was(
    tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine
) -> None:
    client = tenant.client(tollgate.url)
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "first"}])
    fail = "#mock " + json.dumps({"status": 500})
    with pytest.raises(openai.InternalServerError):
        await client.with_options(max_retries=0).chat.completions.create(
            model=PRICED_MODEL, messages=[{"role": "user", "content": fail}], extra_headers=_in(thread.id)
        )
    broken = "#mock " + json.dumps({"words": 30, "drop_after": 3})
    stream = await client.chat.completions.create(
        model=PRICED_MODEL, messages=[{"role": "user", "content": broken}], stream=True, extra_headers=_in(thread.id)
    )
    with pytest.raises(openai.APIError):
        async for _ in stream:
            pass
    assert await _texts(client, thread.id) == [("user", "first")]
    assert [r.status for r in await usage_rows(engine, tenant.key_id)] == ["upstream_error", "stream_error"]


async def test_another_users_thread_is_not_found_and_costs_nothing(
    tollgate: LiveServer, admin: Admin, engine: AsyncEngine
) -> None:
    alice, bob = await admin.tenant(), await admin.tenant()
    thread = await alice.client(tollgate.url).beta.threads.create(messages=[{"role": "user", "content": "secret"}])
    for thread_id in (thread.id, "thread_unknown"):
        with pytest.raises(openai.NotFoundError):
            await bob.client(tollgate.url).chat.completions.create(
                model=PRICED_MODEL, messages=[{"role": "user", "content": "hi"}], extra_headers=_in(thread_id)
            )
    assert await usage_rows(engine, bob.key_id) == []
    assert await _texts(alice.client(tollgate.url), thread.id) == [("user", "secret")]


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"messages": [{"role": "assistant", "content": "made up"}, {"role": "user", "content": "hi"}]}, "messages[0]"),
        ({"messages": [{"role": "user", "content": "hi", "name": "x"}]}, "messages[0]"),
        ({"messages": [{"role": "system", "content": "only instructions"}]}, "messages"),
        ({"messages": [{"role": "user", "content": [{"type": "audio"}]}]}, "messages[0].content"),
        ({"n": 2}, "n"),
    ],
)
async def test_requests_a_thread_cannot_hold_are_refused(
    tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine, change: dict[str, Any], param: str
) -> None:
    client = tenant.client(tollgate.url)
    thread = await client.beta.threads.create()
    body: dict[str, Any] = {"model": PRICED_MODEL, "messages": [{"role": "user", "content": "hi"}], **change}
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(**body, extra_headers=_in(thread.id))
    assert caught.value.param == param
    assert await _texts(client, thread.id) == [] and await usage_rows(engine, tenant.key_id) == []


async def test_a_thread_with_an_active_run_is_refused(tollgate: LiveServer, tenant: Tenant) -> None:
    client = tenant.client(tollgate.url)
    add = {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}
    assistant = await client.beta.assistants.create(model=PRICED_MODEL, tools=[add])  # type: ignore[list-item]
    call = "#mock " + json.dumps({"tool_call": {"name": "add", "arguments": "{}"}})
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": call}])
    run = await client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "requires_action"
    with pytest.raises(openai.BadRequestError, match="active run"):
        await client.chat.completions.create(
            model=PRICED_MODEL, messages=[{"role": "user", "content": "hi"}], extra_headers=_in(thread.id)
        )
