"""``/v1/threads/{thread_id}/runs``: threads executed by Tollgate through upstream chat completions."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from app.api_keys.dependencies import CurrentPrincipal
from app.db import SessionDep
from app.kit.pagination import CursorPage, Page, cursor_page
from app.runs import service
from app.runs.events import EventStream
from app.runs.schemas import Run, RunCreate, RunStep, RunUpdate, ThreadAndRunCreate, ToolOutputs
from app.runs.service import RunExecutor

router = APIRouter(prefix="/v1/threads/{thread_id}/runs", tags=["runs"])
# Included before the threads router: POST /v1/threads/runs must not read as POST /v1/threads/{thread_id}.
create_and_run_router = APIRouter(prefix="/v1/threads", tags=["runs"])


async def get_executor(request: Request) -> RunExecutor:
    executor: RunExecutor = request.app.state.runs
    return executor


Executor = Annotated[RunExecutor, Depends(get_executor)]


_STREAM_DOC: dict[str, Any] = {"responses": {"200": {"content": {"text/event-stream": {}}}}}


@create_and_run_router.post("/runs", response_model=Run, openapi_extra=_STREAM_DOC)
async def create_thread_and_run(
    data: ThreadAndRunCreate, principal: CurrentPrincipal, executor: Executor
) -> Run | EventStream:
    run = await executor.start_with_thread(principal, data)
    if data.stream:
        return EventStream(executor.stream(principal, run, created=True))
    return Run.of(await executor.advance(principal, run.id))


@router.post("", response_model=Run, openapi_extra=_STREAM_DOC)
async def create_run(
    thread_id: str, data: RunCreate, principal: CurrentPrincipal, executor: Executor
) -> Run | EventStream:
    run = await executor.start(principal, thread_id, data)
    if data.stream:
        return EventStream(executor.stream(principal, run, created=True))
    return Run.of(await executor.advance(principal, run.id))


@router.get("", response_model=CursorPage[Run])
async def list_runs(thread_id: str, principal: CurrentPrincipal, session: SessionDep, page: Page) -> CursorPage[Run]:
    rows, has_more = await service.list_runs(session, principal, thread_id, page)
    return cursor_page([Run.of(r) for r in rows], has_more)


@router.get("/{run_id}", response_model=Run)
async def retrieve_run(thread_id: str, run_id: str, principal: CurrentPrincipal, session: SessionDep) -> Run:
    return Run.of(await service.get_run(session, principal, thread_id, run_id))


@router.post("/{run_id}", response_model=Run)
async def update_run(
    thread_id: str, run_id: str, data: RunUpdate, principal: CurrentPrincipal, session: SessionDep
) -> Run:
    return Run.of(await service.update_run(session, principal, thread_id, run_id, data))


@router.post("/{run_id}/cancel", response_model=Run)
async def cancel_run(thread_id: str, run_id: str, principal: CurrentPrincipal, executor: Executor) -> Run:
    return Run.of(await executor.cancel(principal, thread_id, run_id))


@router.post("/{run_id}/submit_tool_outputs", response_model=Run, openapi_extra=_STREAM_DOC)
async def submit_tool_outputs(
    thread_id: str, run_id: str, data: ToolOutputs, principal: CurrentPrincipal, executor: Executor
) -> Run | EventStream:
    run = await executor.accept_tool_outputs(principal, thread_id, run_id, data)
    if data.stream:
        return EventStream(executor.stream(principal, run, created=False))
    return Run.of(await executor.advance(principal, run.id))


# ``include[]`` asks for file-search result contents; Tollgate's runs have none to add.
_Include = Annotated[list[str] | None, Query(alias="include[]")]


@router.get("/{run_id}/steps", response_model=CursorPage[RunStep])
async def list_run_steps(
    thread_id: str, run_id: str, principal: CurrentPrincipal, session: SessionDep, page: Page, include: _Include = None
) -> CursorPage[RunStep]:
    rows, has_more = await service.list_steps(session, principal, thread_id, run_id, page)
    return cursor_page([RunStep.of(r) for r in rows], has_more)


@router.get("/{run_id}/steps/{step_id}", response_model=RunStep)
async def retrieve_run_step(
    thread_id: str,
    run_id: str,
    step_id: str,
    principal: CurrentPrincipal,
    session: SessionDep,
    include: _Include = None,
) -> RunStep:
    return RunStep.of(await service.get_step(session, principal, thread_id, run_id, step_id))
