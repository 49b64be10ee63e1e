"""Runs, shaped as OpenAI's spec has them (``thread.run``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.assistants.schemas import Tools
from app.kit.schemas import Metadata
from app.models import ThreadRun, ThreadRunStep
from app.threads.schemas import MessageCreate, ThreadCreate

TERMINAL = frozenset({"completed", "failed", "cancelled", "expired", "incomplete"})


class RunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    assistant_id: str
    model: str | None = Field(default=None, min_length=1, max_length=200)
    instructions: str | None = None
    additional_instructions: str | None = None
    additional_messages: list[MessageCreate] | None = Field(default=None, max_length=32)
    tools: Tools | None = None
    metadata: Metadata | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stream: bool | None = None
    max_prompt_tokens: int | None = Field(default=None, ge=256)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    truncation_strategy: dict[str, Any] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    response_format: Any = None
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = None


class ThreadAndRunCreate(RunCreate):
    thread: ThreadCreate | None = None


class RunUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metadata: Metadata | None = None


class ToolOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tool_call_id: str
    output: str = Field(max_length=512_000)


class ToolOutputs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tool_outputs: list[ToolOutput] = Field(min_length=1)
    stream: bool | None = None


def _ts(value: datetime | None) -> int | None:
    return int(value.timestamp()) if value is not None else None


class Run(BaseModel):
    id: str
    object: Literal["thread.run"] = "thread.run"
    created_at: int
    thread_id: str
    assistant_id: str
    status: str
    required_action: dict[str, Any] | None
    last_error: dict[str, Any] | None
    expires_at: int | None
    started_at: int | None
    cancelled_at: int | None
    failed_at: int | None
    completed_at: int | None
    incomplete_details: dict[str, Any] | None
    model: str
    instructions: str
    tools: list[dict[str, Any]]
    metadata: dict[str, str]
    usage: dict[str, int] | None
    temperature: float | None
    top_p: float | None
    max_prompt_tokens: int | None
    max_completion_tokens: int | None
    truncation_strategy: dict[str, Any]
    tool_choice: Any
    parallel_tool_calls: bool
    response_format: Any

    @classmethod
    def of(cls, row: ThreadRun) -> Run:
        return cls(
            id=row.id,
            created_at=int(row.created_at.timestamp()),
            thread_id=row.thread_id,
            assistant_id=row.assistant_id,
            status=row.status,
            required_action=row.required_action,
            last_error=row.last_error,
            expires_at=_ts(row.expires_at),
            started_at=_ts(row.started_at),
            cancelled_at=_ts(row.cancelled_at),
            failed_at=_ts(row.failed_at),
            completed_at=_ts(row.completed_at),
            incomplete_details=row.incomplete_details,
            model=row.model,
            instructions=row.instructions or "",
            tools=row.tools,
            metadata=row.meta,
            usage=row.usage,
            temperature=row.temperature,
            top_p=row.top_p,
            max_prompt_tokens=row.max_prompt_tokens,
            max_completion_tokens=row.max_completion_tokens,
            truncation_strategy=row.truncation_strategy or {"type": "auto", "last_messages": None},
            tool_choice=row.tool_choice or "auto",
            parallel_tool_calls=row.parallel_tool_calls,
            response_format=row.response_format or "auto",
        )


class RunStep(BaseModel):
    id: str
    object: Literal["thread.run.step"] = "thread.run.step"
    created_at: int
    assistant_id: str
    thread_id: str
    run_id: str
    type: str
    status: str
    step_details: dict[str, Any]
    last_error: dict[str, Any] | None
    expired_at: int | None
    cancelled_at: int | None
    failed_at: int | None
    completed_at: int | None
    metadata: dict[str, str] = Field(default_factory=dict)
    usage: dict[str, int] | None

    @classmethod
    def of(cls, row: ThreadRunStep) -> RunStep:
        return cls(
            id=row.id,
            created_at=int(row.created_at.timestamp()),
            assistant_id=row.assistant_id,
            thread_id=row.thread_id,
            run_id=row.run_id,
            type=row.type,
            status=row.status,
            step_details=row.step_details,
            last_error=row.last_error,
            expired_at=_ts(row.expired_at),
            cancelled_at=_ts(row.cancelled_at),
            failed_at=_ts(row.failed_at),
            completed_at=_ts(row.completed_at),
            usage=row.usage,
        )
