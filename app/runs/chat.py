"""The chat completion request a run step sends, and what a reply means for the run."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from app.kit.tokens import REPLY_PRIMING, count_chat_prompt, count_text
from app.models import ThreadMessage, ThreadRun
from app.threads.schemas import chat_content

# Room left for the answer when the run sets no max_completion_tokens.
DEFAULT_OUTPUT_ROOM = 4096


def chat_body(run: ThreadRun, messages: Sequence[ThreadMessage], window: int | None) -> dict[str, Any]:
    """The assistant's instructions, the thread in order (truncated as the run says), then what
    the run itself added."""
    thread = _truncated(run, [{"role": m.role, "content": chat_content(m.content)} for m in messages], window)
    chat: list[dict[str, Any]] = []
    if run.instructions:
        chat.append({"role": "system", "content": run.instructions})
    chat.extend(thread)
    chat.extend(run.steps)
    body: dict[str, Any] = {"model": run.model, "messages": chat}
    functions = [{"type": "function", "function": t["function"]} for t in run.tools if t.get("type") == "function"]
    if functions:
        body["tools"] = functions
        body["parallel_tool_calls"] = run.parallel_tool_calls
        if run.tool_choice is not None:
            body["tool_choice"] = run.tool_choice
    optional = {
        "temperature": run.temperature,
        "top_p": run.top_p,
        "max_completion_tokens": run.max_completion_tokens,
        "response_format": None if run.response_format == "auto" else run.response_format,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    return body


def _truncated(run: ThreadRun, thread: list[dict[str, Any]], window: int | None) -> list[dict[str, Any]]:
    """OpenAI's truncation strategies. ``last_messages``: only the newest N messages. ``auto`` (and
    after ``last_messages``): the oldest messages are dropped until the prompt, counted with
    tiktoken, fits the context window less the room for the answer, and ``max_prompt_tokens``.
    The newest message always stays."""
    strategy = run.truncation_strategy or {}
    keep = strategy.get("last_messages") if strategy.get("type") == "last_messages" else None
    if isinstance(keep, int) and keep > 0:
        thread = thread[-keep:]
    limits = [run.max_prompt_tokens or 0]
    if window:
        limits.append(window - (run.max_completion_tokens or DEFAULT_OUTPUT_ROOM))
    limit = min((x for x in limits if x > 0), default=0)
    if not limit:
        return thread
    fixed = [{"role": "system", "content": run.instructions or ""}, *run.steps]
    total = count_chat_prompt(run.model, fixed) + _tools_tokens(run)
    sizes = [count_chat_prompt(run.model, [m]) - REPLY_PRIMING for m in thread]
    total += sum(sizes)
    start = 0
    while total > limit and start < len(thread) - 1:
        total -= sizes[start]
        start += 1
    return thread[start:]


def _tools_tokens(run: ThreadRun) -> int:
    functions = [t["function"] for t in run.tools if t.get("type") == "function"]
    return count_text(run.model, json.dumps(functions)) if functions else 0


@dataclass
class Outcome:
    content: str = ""
    usage: dict[str, int] = field(default_factory=dict)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    assistant_step: dict[str, Any] = field(default_factory=dict)


def outcome_of(reply: dict[str, Any]) -> Outcome:
    choice = (reply.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    usage = {k: int(v) for k, v in (reply.get("usage") or {}).items() if isinstance(v, int)}
    calls = [
        {
            "id": c["id"],
            "type": "function",
            "function": {"name": c["function"]["name"], "arguments": c["function"].get("arguments", "")},
        }
        for c in message.get("tool_calls") or ()
        if c.get("type", "function") == "function"
    ]
    # Text said alongside tool calls is kept as a thread message, so the step does not repeat it.
    step = {"role": "assistant", "content": None, "tool_calls": calls} if calls else {}
    return Outcome(str(message.get("content") or ""), usage, calls, step)
