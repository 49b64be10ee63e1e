"""Runs executed by Tollgate through upstream chat completions, driven with the SDK's beta clients."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from app.kit.tokens import count_chat_prompt
from tests.fixtures.live_server import LiveServer
from tests.fixtures.servers import PRICED_MODEL, Admin, Tenant, usage_rows

ADD = {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}


def _mock(**controls: Any) -> str:
    """A user message that steers the fake upstream for the chat call the run makes."""
    return "#mock " + json.dumps(controls)


async def test_quickstart_run_answers_in_the_thread_and_is_metered(
    tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine
) -> None:
    client = tenant.client(tollgate.url)
    assistant = await client.beta.assistants.create(model=PRICED_MODEL, instructions="You are a tutor.")
    thread = await client.beta.threads.create()
    await client.beta.threads.messages.create(thread.id, role="user", content="Solve 3x + 11 = 14.")

    run = await client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)

    assert (run.status, run.object, run.assistant_id, run.model) == (
        "completed",
        "thread.run",
        assistant.id,
        PRICED_MODEL,
    )
    assert run.instructions == "You are a tutor." and run.completed_at is not None
    messages = (await client.beta.threads.messages.list(thread.id, order="asc")).data
    assert [m.role for m in messages] == ["user", "assistant"]
    reply = messages[1]
    assert (reply.run_id, reply.assistant_id) == (run.id, assistant.id)
    assert reply.content[0].text.value  # type: ignore[union-attr]
    [row] = await usage_rows(engine, tenant.key_id)
    assert row.request_id == f"{run.id}.1" and row.endpoint == "threads.runs"
    assert run.usage is not None
    assert (run.usage.prompt_tokens, run.usage.completion_tokens) == (row.prompt_tokens, row.completion_tokens)
    assert row.cost_micros > 0
    listed = await client.beta.threads.runs.list(thread.id)
    assert [r.id for r in listed.data] == [run.id]


async def test_function_calling_round_trip(tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine) -> None:
    client = tenant.client(tollgate.url)
    assistant = await client.beta.assistants.create(model=PRICED_MODEL, tools=[ADD])  # type: ignore[list-item]
    thread = await client.beta.threads.create(
        messages=[{"role": "user", "content": _mock(tool_call={"name": "add", "arguments": '{"a": 2, "b": 2}'})}]
    )
    run = await client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "requires_action" and run.required_action is not None
    [call] = run.required_action.submit_tool_outputs.tool_calls
    assert (call.function.name, json.loads(call.function.arguments)) == ("add", {"a": 2, "b": 2})

    with pytest.raises(openai.BadRequestError):  # every pending call must be answered, and only those
        await client.beta.threads.runs.submit_tool_outputs(
            run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": "call_other", "output": "4"}]
        )
    done = await client.beta.threads.runs.submit_tool_outputs(
        run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": call.id, "output": "4"}]
    )
    assert done.status == "completed" and done.required_action is None
    roles = [m.role for m in (await client.beta.threads.messages.list(thread.id, order="asc")).data]
    assert roles == ["user", "assistant"]
    rows = await usage_rows(engine, tenant.key_id)
    assert [r.request_id for r in rows] == [f"{run.id}.1", f"{run.id}.2"]
    assert done.usage is not None and done.usage.total_tokens == sum(
        r.prompt_tokens + r.completion_tokens for r in rows
    )


async def test_a_failed_upstream_call_fails_the_run_and_leaves_the_thread_alone(
    tollgate: LiveServer, tenant: Tenant
) -> None:
    client = tenant.client(tollgate.url)
    assistant = await client.beta.assistants.create(model=PRICED_MODEL)
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": _mock(status=500)}])
    run = await client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "failed" and run.failed_at is not None
    assert run.last_error is not None and run.last_error.code == "server_error"
    assert len((await client.beta.threads.messages.list(thread.id)).data) == 1
    # The thread is free for the next run.
    await client.beta.threads.messages.create(thread.id, role="user", content="again")
    assert (await client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)).status == "completed"


async def test_cancelling_a_run_waiting_for_tools(tollgate: LiveServer, tenant: Tenant) -> None:
    client = tenant.client(tollgate.url)
    assistant = await client.beta.assistants.create(model=PRICED_MODEL, tools=[ADD])  # type: ignore[list-item]
    thread = await client.beta.threads.create(
        messages=[{"role": "user", "content": _mock(tool_call={"name": "add", "arguments": "{}"})}]
    )
    run = await client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    cancelled = await client.beta.threads.runs.cancel(run.id, thread_id=thread.id)
    assert cancelled.status == "cancelled" and cancelled.cancelled_at is not None
    with pytest.raises(openai.ConflictError):
        await client.beta.threads.runs.cancel(run.id, thread_id=thread.id)


async def test_runs_are_the_owners_only(tollgate: LiveServer, admin: Admin) -> None:
    alice, bob = await admin.tenant(), await admin.tenant()
    a, b = alice.client(tollgate.url), bob.client(tollgate.url)
    assistant = await a.beta.assistants.create(model=PRICED_MODEL)
    thread = await a.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    run = await a.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    bobs_thread = await b.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    for call in (
        b.beta.threads.runs.retrieve(run.id, thread_id=thread.id),
        b.beta.threads.runs.list(thread.id),
        b.beta.threads.runs.update(run.id, thread_id=thread.id, metadata={}),
        b.beta.threads.runs.cancel(run.id, thread_id=thread.id),
        b.beta.threads.runs.submit_tool_outputs(
            run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": "call_x", "output": "1"}]
        ),
        b.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id),
        b.beta.threads.runs.create(thread_id=bobs_thread.id, assistant_id=assistant.id),  # Alice's assistant
    ):
        with pytest.raises(openai.NotFoundError):
            await call
    assert (await a.beta.threads.runs.retrieve(run.id, thread_id=thread.id)).status == "completed"


async def test_create_and_run_makes_the_thread_and_runs_it(tollgate: LiveServer, tenant: Tenant) -> None:
    client = tenant.client(tollgate.url)
    assistant = await client.beta.assistants.create(model=PRICED_MODEL)
    run = await client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id, thread={"messages": [{"role": "user", "content": "hello"}], "metadata": {"a": "b"}}
    )
    assert run.status == "completed"
    assert (await client.beta.threads.retrieve(run.thread_id)).metadata == {"a": "b"}
    roles = [m.role for m in (await client.beta.threads.messages.list(run.thread_id, order="asc")).data]
    assert roles == ["user", "assistant"]


async def test_create_and_run_with_someone_elses_assistant_keeps_nothing(tollgate: LiveServer, admin: Admin) -> None:
    alice, bob = await admin.tenant(), await admin.tenant()
    assistant = await alice.client(tollgate.url).beta.assistants.create(model=PRICED_MODEL)
    with pytest.raises(openai.NotFoundError):
        await bob.client(tollgate.url).beta.threads.create_and_run(
            assistant_id=assistant.id, thread={"messages": [{"role": "user", "content": "hi"}]}
        )
    async with httpx.AsyncClient(base_url=tollgate.url, headers={"authorization": f"Bearer {bob.token}"}) as http:
        assert (await http.get("/v1/threads")).json()["data"] == [], "the thread was rolled back with the run"


async def test_truncation_strategies_trim_the_oldest_messages(
    tollgate: LiveServer, tenant: Tenant, mock_app: Starlette
) -> None:
    client = tenant.client(tollgate.url)
    assistant = await client.beta.assistants.create(model=PRICED_MODEL, instructions="Be brief.")
    texts = [f"message {i}: " + "lorem ipsum " * 60 for i in range(6)]
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": t} for t in texts])

    await client.beta.threads.runs.create(
        thread_id=thread.id,
        assistant_id=assistant.id,
        truncation_strategy={"type": "last_messages", "last_messages": 2},
    )
    sent = mock_app.state.requests[-1].body["messages"]
    assert [m["content"] for m in sent] == ["Be brief.", texts[4], texts[5]]

    await client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id, max_prompt_tokens=400)
    sent = mock_app.state.requests[-1].body["messages"]
    assert sent[0]["content"] == "Be brief."
    contents = [m["content"] for m in sent[1:]]
    assert 1 <= len(contents) < len(texts) + 2, "the oldest messages were dropped"
    assert texts[0] not in contents
    assert count_chat_prompt(PRICED_MODEL, sent) <= 400


async def test_run_bookkeeping_and_refusals(tollgate: LiveServer, tenant: Tenant) -> None:
    client = tenant.client(tollgate.url)
    assistant = await client.beta.assistants.create(model=PRICED_MODEL, tools=[ADD])  # type: ignore[list-item]
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "plain question"}])
    done = await client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    assert (await client.beta.threads.runs.update(done.id, thread_id=thread.id, metadata={"k": "v"})).metadata == {
        "k": "v"
    }
    own = await client.beta.threads.messages.list(thread.id, run_id=done.id)
    assert [m.role for m in own.data] == ["assistant"], "messages filtered by the run that wrote them"
    with pytest.raises(openai.BadRequestError):  # nothing to submit to: the run is complete
        await client.beta.threads.runs.submit_tool_outputs(
            done.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": "call_x", "output": "1"}]
        )

    await client.beta.threads.messages.create(
        thread.id, role="user", content=_mock(tool_call={"name": "add", "arguments": "{}"})
    )
    waiting = await client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    assert waiting.status == "requires_action"
    with pytest.raises(openai.BadRequestError) as caught:  # one active run per thread, as OpenAI has it
        await client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    assert caught.value.param == "thread_id"
    assert len((await client.beta.threads.runs.list(thread.id)).data) == 2
