"""Run steps: what a run did (the message it wrote, the function calls it made and their
outputs), stored with the run and served as OpenAI's ``thread.run.step``."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import openai
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.kit.db_types import utcnow
from app.models import ThreadRun, ThreadRunStep
from tests.fixtures.live_server import LiveServer
from tests.fixtures.servers import PRICED_MODEL, Admin, Tenant, usage_rows

ADD = {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}


def _mock(**controls: Any) -> str:
    return "#mock " + json.dumps(controls)


def _tool_thread(arguments: str = '{"a": 2, "b": 2}') -> list[Any]:
    return [{"role": "user", "content": _mock(tool_call={"name": "add", "arguments": arguments})}]


async def test_a_plain_run_has_one_message_step_with_the_runs_usage(
    tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine
) -> None:
    client = tenant.client(tollgate.url)
    assistant = await client.beta.assistants.create(model=PRICED_MODEL)
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "hello"}])
    run = await client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)

    [step] = (await client.beta.threads.runs.steps.list(run.id, thread_id=thread.id)).data
    [reply] = (await client.beta.threads.messages.list(thread.id, run_id=run.id)).data
    assert (step.object, step.type, step.status, step.run_id, step.thread_id) == (
        "thread.run.step",
        "message_creation",
        "completed",
        run.id,
        thread.id,
    )
    assert step.step_details.message_creation.message_id == reply.id  # type: ignore[union-attr]
    assert step.completed_at is not None and step.assistant_id == assistant.id
    [row] = await usage_rows(engine, tenant.key_id)
    assert step.usage is not None and (step.usage.prompt_tokens, step.usage.completion_tokens) == (
        row.prompt_tokens,
        row.completion_tokens,
    )
    again = await client.beta.threads.runs.steps.retrieve(step.id, thread_id=thread.id, run_id=run.id)
    assert again == step


async def test_function_calls_are_a_step_that_gets_the_outputs(tollgate: LiveServer, tenant: Tenant) -> None:
    client = tenant.client(tollgate.url)
    assistant = await client.beta.assistants.create(model=PRICED_MODEL, tools=[ADD])  # type: ignore[list-item]
    thread = await client.beta.threads.create(messages=_tool_thread())
    run = await client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "requires_action" and run.required_action is not None
    [call] = run.required_action.submit_tool_outputs.tool_calls

    [waiting] = (await client.beta.threads.runs.steps.list(run.id, thread_id=thread.id)).data
    assert (waiting.type, waiting.status) == ("tool_calls", "in_progress")
    [pending] = waiting.step_details.tool_calls  # type: ignore[union-attr]
    assert (pending.id, pending.function.name, pending.function.output) == (call.id, "add", None)  # type: ignore[union-attr]

    done = await client.beta.threads.runs.submit_tool_outputs(
        run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": call.id, "output": "4"}]
    )
    assert done.status == "completed"
    steps = (await client.beta.threads.runs.steps.list(run.id, thread_id=thread.id, order="asc")).data
    assert [(s.type, s.status) for s in steps] == [("tool_calls", "completed"), ("message_creation", "completed")]
    answered = steps[0].step_details.tool_calls[0]  # type: ignore[union-attr]
    assert answered.function.output == "4"  # type: ignore[union-attr]
    assert done.usage is not None
    assert sum(s.usage.total_tokens for s in steps if s.usage) == done.usage.total_tokens
    # Cursor pagination over the steps, newest first by default.
    first = await client.beta.threads.runs.steps.list(run.id, thread_id=thread.id, limit=1)
    assert first.has_more and [s.id for s in first.data] == [steps[1].id]
    rest = await client.beta.threads.runs.steps.list(run.id, thread_id=thread.id, limit=1, after=steps[1].id)
    assert [s.id for s in rest.data] == [steps[0].id] and not rest.has_more


async def test_a_streamed_run_stores_the_steps_it_announced(tollgate: LiveServer, tenant: Tenant) -> None:
    client = tenant.client(tollgate.url)
    assistant = await client.beta.assistants.create(model=PRICED_MODEL)
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "stream me"}])
    async with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id) as stream:
        await stream.until_done()
        run = await stream.get_final_run()
        streamed = await stream.get_final_run_steps()
    stored = (await client.beta.threads.runs.steps.list(run.id, thread_id=thread.id)).data
    assert [s.id for s in streamed] == [s.id for s in stored]
    assert [(s.type, s.status) for s in stored] == [("message_creation", "completed")]
    assert stored[0].usage is not None and stored[0].usage.total_tokens > 0


async def test_cancelled_and_expired_runs_close_their_open_step(
    tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine
) -> None:
    client = tenant.client(tollgate.url)
    assistant = await client.beta.assistants.create(model=PRICED_MODEL, tools=[ADD])  # type: ignore[list-item]
    cancelled_thread = await client.beta.threads.create(messages=_tool_thread())
    run = await client.beta.threads.runs.create(thread_id=cancelled_thread.id, assistant_id=assistant.id)
    await client.beta.threads.runs.cancel(run.id, thread_id=cancelled_thread.id)
    [step] = (await client.beta.threads.runs.steps.list(run.id, thread_id=cancelled_thread.id)).data
    assert (step.status, step.cancelled_at is not None) == ("cancelled", True)

    expiring_thread = await client.beta.threads.create(messages=_tool_thread())
    run = await client.beta.threads.runs.create(thread_id=expiring_thread.id, assistant_id=assistant.id)
    async with engine.begin() as conn:
        await conn.execute(
            update(ThreadRun).where(ThreadRun.id == run.id).values(expires_at=utcnow() - timedelta(seconds=1))
        )
    [step] = (await client.beta.threads.runs.steps.list(run.id, thread_id=expiring_thread.id)).data
    assert (step.status, step.expired_at is not None) == ("expired", True)


async def test_steps_are_the_owners_only(tollgate: LiveServer, admin: Admin) -> None:
    alice, bob = await admin.tenant(), await admin.tenant()
    a, b = alice.client(tollgate.url), bob.client(tollgate.url)
    assistant = await a.beta.assistants.create(model=PRICED_MODEL)
    thread = await a.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    run = await a.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    [step] = (await a.beta.threads.runs.steps.list(run.id, thread_id=thread.id)).data
    for call in (
        b.beta.threads.runs.steps.list(run.id, thread_id=thread.id),
        b.beta.threads.runs.steps.retrieve(step.id, thread_id=thread.id, run_id=run.id),
    ):
        with pytest.raises(openai.NotFoundError):
            await call
    with pytest.raises(openai.NotFoundError, match="step"):
        await a.beta.threads.runs.steps.retrieve("step_unknown", thread_id=thread.id, run_id=run.id)
    other = await a.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    with pytest.raises(openai.NotFoundError):  # a step is found only under its own run
        await a.beta.threads.runs.steps.retrieve(step.id, thread_id=thread.id, run_id=other.id)
    with pytest.raises(openai.BadRequestError):
        await a.beta.threads.runs.steps.list(run.id, thread_id=thread.id, limit=0)


async def test_deleting_the_thread_deletes_the_steps(tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine) -> None:
    client = tenant.client(tollgate.url)
    assistant = await client.beta.assistants.create(model=PRICED_MODEL)
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    run = await client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    await client.beta.threads.delete(thread.id)
    async with engine.connect() as conn:
        left = (await conn.execute(select(func.count()).where(ThreadRunStep.run_id == run.id))).scalar_one()
    assert left == 0
