"""Runs: a thread executed with an assistant through upstream chat completions, metered like any
chat call (reserved, settled, one ledger row per upstream call, request id ``<run id>.<n>``).

A run executes within the request that creates it (or that submits its tool outputs): there is
no queue to lose runs in. Like the money path, the executor keeps its own short transactions, so
no database connection is held while upstream answers.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.api_keys.schemas import Principal
from app.assistants import service as assistants
from app.audit.schemas import ObjectAction
from app.audit.support import Target, reach
from app.errors import Conflict, GatewayError, InvalidRequest, NotFound
from app.gateway.service import CallContext, Gateway
from app.kit.crypto import new_id
from app.kit.db_types import utcnow
from app.kit.pagination import PageParams, cursor_anchor
from app.models import Assistant, ThreadMessage, ThreadRun, ThreadRunStep
from app.runs.chat import chat_body, outcome_of
from app.runs.events import Event, StepStream, run_event
from app.runs.repository import RunRepository, RunStepRepository
from app.runs.schemas import Run, RunCreate, RunUpdate, ThreadAndRunCreate, ToolOutputs
from app.runs.steps import answer_calls, new_steps
from app.threads import service as threads
from app.threads.repository import MessageRepository
from app.threads.schemas import ThreadCreate
from app.usage.pricing import TokenUsage

RUN_TTL = timedelta(minutes=10)
# A run mid-call is "cancelling" already; one in these states can still be cancelled.
CANCELLABLE = frozenset({"queued", "in_progress", "requires_action"})


def run_not_found(run_id: str) -> NotFound:
    return NotFound(f"No run found with id '{run_id}'.", param="run_id")


async def get_run(
    session: AsyncSession,
    principal: Principal,
    thread_id: str,
    run_id: str,
    action: ObjectAction = "object.read",
    detail: dict[str, Any] | None = None,
) -> ThreadRun:
    """The caller's run; for an admin anyone's (support access, audited)."""
    repo = RunRepository(session)
    await repo.expire_overdue(thread_id, utcnow())
    find = lambda owner: repo.get_owned(thread_id, run_id, owner)  # noqa: E731 - one use
    run = await reach(session, principal, Target("thread.run", run_id), find, action, detail)
    if run is None:
        raise run_not_found(run_id)
    return run


async def list_runs(
    session: AsyncSession, principal: Principal, thread_id: str, page: PageParams
) -> tuple[list[ThreadRun], bool]:
    thread = await threads.get_thread(session, principal, thread_id, "object.listed", {"list": "runs"})
    repo = RunRepository(session)
    await repo.expire_overdue(thread.id, utcnow())
    anchor = await cursor_anchor(page, lambda id_: repo.get_owned(thread.id, id_, thread.user_id), "run")
    rows, has_more = await repo.page(thread.id, page, anchor)
    return list(rows), has_more


def step_not_found(step_id: str) -> NotFound:
    return NotFound(f"No run step found with id '{step_id}'.", param="step_id")


async def get_step(
    session: AsyncSession, principal: Principal, thread_id: str, run_id: str, step_id: str
) -> ThreadRunStep:
    run = await get_run(session, principal, thread_id, run_id, detail={"step_id": step_id})
    step = await RunStepRepository(session).get_owned(run.id, step_id, run.user_id)
    if step is None:
        raise step_not_found(step_id)
    return step


async def list_steps(
    session: AsyncSession, principal: Principal, thread_id: str, run_id: str, page: PageParams
) -> tuple[list[ThreadRunStep], bool]:
    run = await get_run(session, principal, thread_id, run_id, "object.listed", {"list": "steps"})
    repo = RunStepRepository(session)
    anchor = await cursor_anchor(page, lambda id_: repo.get_owned(run.id, id_, run.user_id), "step")
    rows, has_more = await repo.page(run.id, page, anchor)
    return list(rows), has_more


async def update_run(
    session: AsyncSession, principal: Principal, thread_id: str, run_id: str, data: RunUpdate
) -> ThreadRun:
    run = await get_run(session, principal, thread_id, run_id, "object.updated")
    if "metadata" in data.model_fields_set:
        run.meta = data.metadata or {}
    await session.flush()
    return run


class RunExecutor:
    """Starts runs in one short transaction, then advances them by one upstream call, either
    answering with the run's next state or streaming the Assistants events of that call."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], gateway: Gateway) -> None:
        self.sessionmaker = sessionmaker
        self.gateway = gateway

    async def start(self, principal: Principal, thread_id: str, data: RunCreate) -> ThreadRun:
        async with self.sessionmaker.begin() as session:
            thread = await threads.own_thread(session, principal, thread_id)
            return await self._start(session, principal, thread.id, data)

    async def start_with_thread(self, principal: Principal, data: ThreadAndRunCreate) -> ThreadRun:
        """A new thread and its first run; nothing is kept if the run cannot start."""
        async with self.sessionmaker.begin() as session:
            thread = await threads.create_thread(session, principal, data.thread or ThreadCreate())
            return await self._start(session, principal, thread.id, data)

    async def _start(self, session: AsyncSession, principal: Principal, thread_id: str, data: RunCreate) -> ThreadRun:
        assistant = await assistants.own(session, principal, data.assistant_id)
        self.gateway.authorize(principal, data.model or assistant.model)
        repo = RunRepository(session)
        await repo.expire_overdue(thread_id, utcnow())
        if await repo.active_on(thread_id) is not None:
            raise InvalidRequest(f"Thread {thread_id} already has an active run.", param="thread_id")
        for message in data.additional_messages or ():
            await threads.create_message(session, principal, thread_id, message)
        run = _new_run(principal, thread_id, assistant, data)
        session.add(run)
        return run

    async def accept_tool_outputs(
        self, principal: Principal, thread_id: str, run_id: str, data: ToolOutputs
    ) -> ThreadRun:
        async with self.sessionmaker.begin() as session:
            # Owner only, admins too: the run's next call is billed to whoever submits.
            repo = RunRepository(session)
            await repo.expire_overdue(thread_id, utcnow())
            run = await repo.get_owned(thread_id, run_id, principal.user_id)
            if run is None:
                raise run_not_found(run_id)
            if run.status != "requires_action" or run.required_action is None:
                raise InvalidRequest(f"Run {run_id} is not waiting for tool outputs (status {run.status}).")
            wanted = {c["id"] for c in run.required_action["submit_tool_outputs"]["tool_calls"]}
            given = [o.tool_call_id for o in data.tool_outputs]
            if sorted(given) != sorted(wanted):
                raise InvalidRequest(
                    f"Tool outputs must answer exactly the pending tool calls: {sorted(wanted)}.", param="tool_outputs"
                )
            outputs = [{"role": "tool", "tool_call_id": o.tool_call_id, "content": o.output} for o in data.tool_outputs]
            run.steps = [*run.steps, *outputs]
            step = await RunStepRepository(session).open_tool_step(run.id)
            if step is not None:
                answer_calls(step, {o.tool_call_id: o.output for o in data.tool_outputs}, utcnow())
            run.required_action, run.status = None, "in_progress"
        return run

    async def cancel(self, principal: Principal, thread_id: str, run_id: str) -> ThreadRun:
        async with self.sessionmaker.begin() as session:
            run = await get_run(session, principal, thread_id, run_id, "object.updated")
            if run.status not in CANCELLABLE:
                raise Conflict(f"Cannot cancel run {run_id}: it is already {run.status}.")
            # A run mid-call is finished by its executor, which sees the request and stops there.
            run.status = "cancelling" if run.status == "in_progress" else "cancelled"
            if run.status == "cancelled":
                run.cancelled_at, run.required_action = utcnow(), None
                await RunStepRepository(session).close_open([run.id], "cancelled", run.cancelled_at)
        return run

    async def advance(self, principal: Principal, run_id: str) -> ThreadRun:
        """One upstream call for the run, then the run's next state."""
        context, body = await self._prepare(principal, run_id)
        try:
            response = await self.gateway.chat(context, json.dumps(body).encode(), body)
            reply: dict[str, Any] = json.loads(bytes(response.body))
        except GatewayError as exc:
            return await self._fail(run_id, exc)
        run, _, _ = await self._apply(run_id, reply)
        return run

    async def stream(self, principal: Principal, run: ThreadRun, *, created: bool) -> AsyncIterator[Event]:
        """``advance`` as an Assistants event stream: upstream's chunks become deltas as they come."""
        if created:
            yield "thread.run.created", Run.of(run).model_dump()
        yield "thread.run.in_progress", Run.of(run).model_dump()
        context, body = await self._prepare(principal, run.id)
        step = StepStream(run)
        try:
            chunks = await self.gateway.open_chat_stream(context, body)
            async with chunks:
                async for chunk in chunks:
                    for event in step.feed(chunk):
                        yield event
        except GatewayError as exc:
            yield run_event(await self._fail(run.id, exc))
            return
        billed = chunks.billed or TokenUsage()
        usage = {"prompt_tokens": billed.prompt, "completion_tokens": billed.completion}
        done, message, steps = await self._apply(run.id, step.reply(usage), step)
        for event in step.closing(done, message, steps):
            yield event

    async def _prepare(self, principal: Principal, run_id: str) -> tuple[CallContext, dict[str, Any]]:
        async with self.sessionmaker() as session:
            run = await RunRepository(session).get_by_id(run_id)
            assert run is not None
            messages = await MessageRepository(session).conversation(run.thread_id)
        calls = 1 + sum(1 for step in run.steps if step.get("role") == "assistant")
        context = CallContext(principal, f"{run.id}.{calls}", time.perf_counter(), "threads.runs")
        return context, chat_body(run, messages, self.gateway.prices.context_window(run.model))

    async def _apply(
        self, run_id: str, reply: dict[str, Any], streamed: StepStream | None = None
    ) -> tuple[ThreadRun, ThreadMessage | None, list[ThreadRunStep]]:
        """The reply written to the run, its steps and the thread in one transaction. A run that
        expired or was cancelled meanwhile keeps that state; the call was billed all the same."""
        async with self.sessionmaker.begin() as session:
            run = await RunRepository(session).get_by_id(run_id)
            assert run is not None
            outcome = outcome_of(reply)
            run.usage = _added(run.usage, outcome.usage)
            if run.status not in ("in_progress", "cancelling"):
                return run, None, []
            now = utcnow()
            if run.status == "cancelling":
                run.status, run.cancelled_at = "cancelled", now
                return run, None, []
            message = None
            if outcome.content or not outcome.tool_calls:
                message = _assistant_message(run, outcome.content, streamed.message_id if streamed else new_id("msg"))
                session.add(message)
            ids = streamed.step_ids() if streamed else (None, None)
            steps = new_steps(run, message.id if message else None, outcome.tool_calls, outcome.usage, now, ids)
            session.add_all(steps)
            if outcome.tool_calls:
                run.steps = [*run.steps, outcome.assistant_step]
                run.status = "requires_action"
                calls = {"tool_calls": outcome.tool_calls}
                run.required_action = {"type": "submit_tool_outputs", "submit_tool_outputs": calls}
            else:
                run.status, run.completed_at = "completed", now
        return run, message, steps

    async def _fail(self, run_id: str, exc: GatewayError) -> ThreadRun:
        """The thread stays as it was; the run records why it failed."""
        async with self.sessionmaker.begin() as session:
            run = await RunRepository(session).get_by_id(run_id)
            assert run is not None
            if run.status in ("in_progress", "cancelling"):
                code = "rate_limit_exceeded" if exc.status_code == 429 else "server_error"
                run.last_error = {"code": code, "message": exc.message}
                run.status, run.failed_at = "failed", utcnow()
        return run


def _new_run(principal: Principal, thread_id: str, assistant: Assistant, data: RunCreate) -> ThreadRun:
    now = utcnow()
    instructions = data.instructions if data.instructions is not None else assistant.instructions
    if data.additional_instructions:
        instructions = (
            f"{instructions}\n\n{data.additional_instructions}" if instructions else data.additional_instructions
        )
    return ThreadRun(
        id=new_id("run"),
        thread_id=thread_id,
        user_id=principal.user_id,
        assistant_id=assistant.id,
        status="in_progress",
        model=data.model or assistant.model,
        instructions=instructions,
        tools=data.tools if data.tools is not None else assistant.tools,
        meta=data.metadata or {},
        temperature=data.temperature if data.temperature is not None else assistant.temperature,
        top_p=data.top_p if data.top_p is not None else assistant.top_p,
        response_format=data.response_format if data.response_format is not None else assistant.response_format,
        tool_choice=data.tool_choice,
        parallel_tool_calls=data.parallel_tool_calls if data.parallel_tool_calls is not None else True,
        max_prompt_tokens=data.max_prompt_tokens,
        max_completion_tokens=data.max_completion_tokens,
        truncation_strategy=data.truncation_strategy,
        steps=[],
        created_at=now,
        started_at=now,
        expires_at=now + RUN_TTL,
    )


def _assistant_message(run: ThreadRun, text: str, message_id: str) -> ThreadMessage:
    now = utcnow()
    return ThreadMessage(
        id=message_id,
        thread_id=run.thread_id,
        user_id=run.user_id,
        role="assistant",
        content=[{"type": "text", "text": {"value": text, "annotations": []}}],
        status="completed",
        assistant_id=run.assistant_id,
        run_id=run.id,
        completed_at=now,
        meta={},
        created_at=now,
    )


def _added(total: dict[str, int] | None, usage: dict[str, int]) -> dict[str, int]:
    prompt = (total or {}).get("prompt_tokens", 0) + usage.get("prompt_tokens", 0)
    completion = (total or {}).get("completion_tokens", 0) + usage.get("completion_tokens", 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
