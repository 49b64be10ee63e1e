"""The Assistants event stream of a streamed run (``thread.run.created`` ... ``done``).

Chat chunks from upstream become ``thread.message.delta`` and ``thread.run.step.delta`` events
as they arrive; the run's rows (its steps among them, under the ids the stream announced) are
written once, after the upstream call, never per chunk.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from app.kit.crypto import new_id
from app.kit.db_types import utcnow
from app.models import ThreadMessage, ThreadRun, ThreadRunStep
from app.runs.schemas import Run, RunStep
from app.threads.schemas import Message

Event = tuple[str, dict[str, Any]]
# The run events that end a stream: the SDK's helpers read the final run from them.
FINAL_RUN_EVENTS = frozenset({"completed", "failed", "cancelled", "expired", "requires_action", "incomplete"})


def run_event(run: ThreadRun) -> Event:
    state = run.status if run.status in FINAL_RUN_EVENTS or run.status == "cancelling" else "in_progress"
    return f"thread.run.{state}", Run.of(run).model_dump()


@dataclass
class StepStream:
    """What one upstream call of a run has produced so far, and the events announcing it."""

    run: ThreadRun
    message_id: str = field(default_factory=lambda: new_id("msg"))
    message_step_id: str = field(default_factory=lambda: new_id("step"))
    tool_step_id: str = field(default_factory=lambda: new_id("step"))
    message_step: dict[str, Any] | None = None
    tool_step: dict[str, Any] | None = None
    content: list[str] = field(default_factory=list)
    calls: dict[int, dict[str, Any]] = field(default_factory=dict)

    def feed(self, chunk: dict[str, Any]) -> Iterator[Event]:
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str) and delta["content"]:
                yield from self._text(delta["content"])
            for call in delta.get("tool_calls") or ():
                if isinstance(call, dict):
                    yield from self._tool_call(call)

    def _text(self, text: str) -> Iterator[Event]:
        if self.message_step is None:
            yield from self.open_message()
        self.content.append(text)
        part = {"index": 0, "type": "text", "text": {"value": text, "annotations": []}}
        yield (
            "thread.message.delta",
            {
                "id": self.message_id,
                "object": "thread.message.delta",
                "delta": {"content": [part]},
            },
        )

    def open_message(self) -> Iterator[Event]:
        details = {"type": "message_creation", "message_creation": {"message_id": self.message_id}}
        self.message_step = self._step(self.message_step_id, "message_creation", details)
        yield "thread.run.step.created", self.message_step
        yield "thread.run.step.in_progress", self.message_step
        message = {
            "id": self.message_id,
            "object": "thread.message",
            "created_at": int(utcnow().timestamp()),
            "thread_id": self.run.thread_id,
            "status": "in_progress",
            "incomplete_details": None,
            "completed_at": None,
            "incomplete_at": None,
            "role": "assistant",
            "content": [],
            "assistant_id": self.run.assistant_id,
            "run_id": self.run.id,
            "attachments": [],
            "metadata": {},
        }
        yield "thread.message.created", message
        yield "thread.message.in_progress", message

    def _tool_call(self, call: dict[str, Any]) -> Iterator[Event]:
        if self.tool_step is None:
            self.tool_step = self._step(self.tool_step_id, "tool_calls", {"type": "tool_calls", "tool_calls": []})
            yield "thread.run.step.created", self.tool_step
            yield "thread.run.step.in_progress", self.tool_step
        index = int(call.get("index") or 0)
        known = self.calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
        function = call.get("function") or {}
        piece: dict[str, Any] = {"index": index, "type": "function"}
        if call.get("id"):
            known["id"] = piece["id"] = call["id"]
        delta_function = {k: function[k] for k in ("name", "arguments") if isinstance(function.get(k), str)}
        for key, value in delta_function.items():
            known[key] += value
        piece["function"] = {**delta_function, "output": None}
        yield (
            "thread.run.step.delta",
            {
                "id": self.tool_step["id"],
                "object": "thread.run.step.delta",
                "delta": {"step_details": {"type": "tool_calls", "tool_calls": [piece]}},
            },
        )

    def reply(self, usage: dict[str, int]) -> dict[str, Any]:
        """The call's result shaped as a non-streamed chat completion, for the executor."""
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self.content)}
        if self.calls:
            message["tool_calls"] = self._calls()
        return {"choices": [{"index": 0, "message": message}], "usage": usage}

    def step_ids(self) -> tuple[str, str]:
        """The ids this stream gives (or will give) its message and tool-calls steps."""
        return self.message_step_id, self.tool_step_id

    def closing(self, run: ThreadRun, message: ThreadMessage | None, steps: list[ThreadRunStep]) -> Iterator[Event]:
        """Once the run's rows are written: the message and the finished steps as stored, then
        the run's state. A tool-calls step waiting for outputs stays open."""
        if message is not None:
            if self.message_step is None:
                yield from self.open_message()
            yield "thread.message.completed", Message.of(message).model_dump()
        for step in steps:
            if step.status == "completed":
                yield "thread.run.step.completed", RunStep.of(step).model_dump()
        yield run_event(run)

    def _step(self, step_id: str, kind: str, details: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": step_id,
            "object": "thread.run.step",
            "created_at": int(utcnow().timestamp()),
            "assistant_id": self.run.assistant_id,
            "thread_id": self.run.thread_id,
            "run_id": self.run.id,
            "type": kind,
            "status": "in_progress",
            "step_details": details,
            "last_error": None,
            "expired_at": None,
            "cancelled_at": None,
            "failed_at": None,
            "completed_at": None,
            "metadata": {},
            "usage": None,
        }

    def _calls(self) -> list[dict[str, Any]]:
        return [
            {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
            for _, c in sorted(self.calls.items())
        ]


class EventStream(Response):
    """Writes a run's events as SSE. A client that goes away does not stop the run: the events
    are still drained, so the run finishes and its answer is kept, as with OpenAI."""

    media_type = "text/event-stream"

    def __init__(self, events: AsyncIterator[Event]) -> None:  # no body to render
        self.events = events
        self.status_code = 200
        self.background = None
        self.gone = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]
        await self._send(send, {"type": "http.response.start", "status": 200, "headers": headers})
        async for name, data in self.events:
            body = b"event: " + name.encode() + b"\ndata: " + json.dumps(data).encode() + b"\n\n"
            await self._send(send, {"type": "http.response.body", "body": body, "more_body": True})
        done = b"event: done\ndata: [DONE]\n\n"
        await self._send(send, {"type": "http.response.body", "body": done, "more_body": False})

    async def _send(self, send: Send, message: dict[str, Any]) -> None:
        if self.gone:
            return
        try:
            await send(message)
        except (OSError, ClientDisconnect):
            self.gone = True
