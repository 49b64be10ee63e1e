"""Streamed runs: OpenAI's Assistants event stream, driven with the SDK's stream helpers."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.kit.db_types import utcnow
from app.models import ThreadRun
from tests.fixtures.live_server import LiveServer
from tests.fixtures.servers import PRICED_MODEL, Tenant, lease_count, usage_rows

ADD = {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}


def _mock(**controls: Any) -> str:
    return "#mock " + json.dumps(controls)


async def _events(http: httpx.AsyncClient, path: str, body: dict[str, Any]) -> list[tuple[str, Any]]:
    """The raw SSE events of a streamed run, as (event, parsed data)."""
    events: list[tuple[str, Any]] = []
    async with http.stream("POST", path, json={**body, "stream": True}) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        name = ""
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, line[6:] if line[6:] == "[DONE]" else json.loads(line[6:])))
    return events


async def test_stream_helper_delivers_text_deltas_and_the_final_run(
    tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine
) -> None:
    client = tenant.client(tollgate.url)
    assistant = await client.beta.assistants.create(model=PRICED_MODEL, instructions="Be brief.")
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": _mock(words=20)}])

    async with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id) as stream:
        deltas = [text async for text in stream.text_deltas]
        run = await stream.get_final_run()
        [streamed] = await stream.get_final_messages()

    assert len(deltas) > 1, "the answer arrived in pieces"
    assert run.status == "completed" and run.usage is not None and run.usage.completion_tokens > 0
    [stored, _question] = (await client.beta.threads.messages.list(thread.id)).data
    assert stored.id == streamed.id and stored.run_id == run.id and stored.status == "completed"
    assert stored.content[0].text.value == "".join(deltas)  # type: ignore[union-attr]
    [row] = await usage_rows(engine, tenant.key_id)
    assert (row.request_id, row.endpoint, row.usage_source) == (f"{run.id}.1", "threads.runs", "upstream")
    assert (row.prompt_tokens, row.completion_tokens) == (run.usage.prompt_tokens, run.usage.completion_tokens)
    assert row.cost_micros > 0 and await lease_count(engine, tenant.key_id) == 0


async def test_event_sequence_follows_openais(tollgate: LiveServer, tenant: Tenant) -> None:
    client = tenant.client(tollgate.url)
    assistant = await client.beta.assistants.create(model=PRICED_MODEL)
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "hello"}])
    async with tenant.http(tollgate.url) as http:
        events = await _events(http, f"/v1/threads/{thread.id}/runs", {"assistant_id": assistant.id})
    names = [name for name, _ in events]
    deltas = names.count("thread.message.delta")
    assert names == [
        "thread.run.created",
        "thread.run.in_progress",
        "thread.run.step.created",
        "thread.run.step.in_progress",
        "thread.message.created",
        "thread.message.in_progress",
        *["thread.message.delta"] * deltas,
        "thread.message.completed",
        "thread.run.step.completed",
        "thread.run.completed",
        "done",
    ]
    assert deltas > 1 and events[-1][1] == "[DONE]"
    step = events[2][1]
    assert (step["object"], step["type"], step["run_id"]) == ("thread.run.step", "message_creation", events[0][1]["id"])
    assert step["step_details"]["message_creation"]["message_id"] == events[4][1]["id"]


async def test_streamed_function_calling_round_trip(tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine) -> None:
    client = tenant.client(tollgate.url)
    assistant = await client.beta.assistants.create(model=PRICED_MODEL, tools=[ADD])  # type: ignore[list-item]
    arguments = json.dumps({"a": 20, "b": 22, "note": "long enough to arrive in several deltas"})
    thread = await client.beta.threads.create(
        messages=[{"role": "user", "content": _mock(tool_call={"name": "add", "arguments": arguments})}]
    )
    async with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id) as stream:
        await stream.until_done()
        run = await stream.get_final_run()
        steps = await stream.get_final_run_steps()
    assert run.status == "requires_action" and run.required_action is not None
    [call] = run.required_action.submit_tool_outputs.tool_calls
    assert (call.function.name, call.function.arguments) == ("add", arguments)
    [step] = steps
    assert step.step_details.type == "tool_calls"
    assert step.step_details.tool_calls[0].function.arguments == arguments  # type: ignore[union-attr]

    async with client.beta.threads.runs.submit_tool_outputs_stream(
        run_id=run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": call.id, "output": "42"}]
    ) as stream:
        answer = "".join([text async for text in stream.text_deltas])
        done = await stream.get_final_run()
    assert done.status == "completed" and answer
    rows = await usage_rows(engine, tenant.key_id)
    assert [r.request_id for r in rows] == [f"{run.id}.1", f"{run.id}.2"]
    assert done.usage is not None
    assert done.usage.total_tokens == sum(r.prompt_tokens + r.completion_tokens for r in rows)


async def test_create_and_run_stream(tollgate: LiveServer, tenant: Tenant) -> None:
    client = tenant.client(tollgate.url)
    assistant = await client.beta.assistants.create(model=PRICED_MODEL)
    async with client.beta.threads.create_and_run_stream(
        assistant_id=assistant.id, thread={"messages": [{"role": "user", "content": "hi"}]}
    ) as stream:
        await stream.until_done()
        run = await stream.get_final_run()
    assert run.status == "completed"
    roles = [m.role for m in (await client.beta.threads.messages.list(run.thread_id, order="asc")).data]
    assert roles == ["user", "assistant"]


async def test_upstream_failure_mid_stream_fails_the_run(
    tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine
) -> None:
    client = tenant.client(tollgate.url)
    assistant = await client.beta.assistants.create(model=PRICED_MODEL)
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": _mock(words=30, drop_after=3)}])
    async with tenant.http(tollgate.url) as http:
        events = await _events(http, f"/v1/threads/{thread.id}/runs", {"assistant_id": assistant.id})
    assert [name for name, _ in events][-2:] == ["thread.run.failed", "done"]
    failed = events[-2][1]
    assert failed["last_error"]["code"] == "server_error" and failed["failed_at"]
    assert [m.role for m in (await client.beta.threads.messages.list(thread.id)).data] == ["user"]
    [row] = await usage_rows(engine, tenant.key_id)
    assert row.status == "stream_error" and row.completion_tokens > 0, "what was generated is still billed"
    assert await lease_count(engine, tenant.key_id) == 0


async def test_a_client_that_hangs_up_does_not_stop_the_run(tollgate: LiveServer, tenant: Tenant) -> None:
    client = tenant.client(tollgate.url)
    assistant = await client.beta.assistants.create(model=PRICED_MODEL)
    thread = await client.beta.threads.create(
        messages=[{"role": "user", "content": _mock(words=10, chunk_delay_ms=50)}]
    )
    async with tenant.http(tollgate.url) as http:
        body = {"assistant_id": assistant.id, "stream": True}
        async with http.stream("POST", f"/v1/threads/{thread.id}/runs", json=body) as response:
            async for line in response.aiter_lines():
                if line.startswith("event: thread.message.delta"):
                    break  # leaving the block closes the connection mid-answer
    for _ in range(100):
        [run] = (await client.beta.threads.runs.list(thread.id)).data
        if run.status != "in_progress":
            break
        await asyncio.sleep(0.05)
    assert run.status == "completed", "the run finished without its client, as OpenAI's do"
    assert [m.role for m in (await client.beta.threads.messages.list(thread.id)).data] == ["assistant", "user"]


async def test_overdue_runs_expire_and_free_the_thread(
    tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine
) -> None:
    client = tenant.client(tollgate.url)
    assistant = await client.beta.assistants.create(model=PRICED_MODEL, tools=[ADD])  # type: ignore[list-item]
    thread = await client.beta.threads.create(
        messages=[{"role": "user", "content": _mock(tool_call={"name": "add", "arguments": "{}"})}]
    )
    run = await client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "requires_action"
    async with engine.begin() as conn:  # ten minutes pass without tool outputs
        await conn.execute(
            update(ThreadRun).where(ThreadRun.id == run.id).values(expires_at=utcnow() - timedelta(seconds=1))
        )
    expired = await client.beta.threads.runs.retrieve(run.id, thread_id=thread.id)
    assert expired.status == "expired" and expired.required_action is None
    with pytest.raises(openai.BadRequestError, match="not waiting for tool outputs"):
        await client.beta.threads.runs.submit_tool_outputs(
            run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": "call_x", "output": "1"}]
        )
    await client.beta.threads.messages.create(thread.id, role="user", content="plain question")
    assert (await client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)).status == "completed"
