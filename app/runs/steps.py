"""Run steps as a run takes them: the message it wrote, the function calls it made. Written in
the transaction that applies the upstream call's reply, so a run and its steps never disagree."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from app.kit.crypto import new_id
from app.models import ThreadRun, ThreadRunStep


def new_steps(
    run: ThreadRun,
    message_id: str | None,
    calls: Sequence[dict[str, Any]],
    usage: dict[str, int],
    now: datetime,
    ids: tuple[str | None, str | None] = (None, None),
) -> list[ThreadRunStep]:
    """The steps of one upstream call: a finished message step if it wrote a message, then an
    open tool-calls step if it called functions. The call's usage goes on its last step, so the
    steps of a run add up to ``run.usage``. ``ids`` keeps the ids a stream announced."""
    message_step_id, tool_step_id = ids
    steps: list[ThreadRunStep] = []
    if message_id is not None:
        created: dict[str, Any] = {"type": "message_creation", "message_creation": {"message_id": message_id}}
        steps.append(_step(run, message_step_id, "message_creation", "completed", created, now))
        steps[-1].completed_at = now
    if calls:
        tool_calls = [{**c, "function": {**c["function"], "output": None}} for c in calls]
        called: dict[str, Any] = {"type": "tool_calls", "tool_calls": tool_calls}
        # A microsecond later, so the message step sorts first, as the model wrote it first.
        steps.append(_step(run, tool_step_id, "tool_calls", "in_progress", called, now + timedelta(microseconds=1)))
    if steps:
        prompt, completion = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
        steps[-1].usage = {"prompt_tokens": prompt, "completion_tokens": completion}
        steps[-1].usage["total_tokens"] = prompt + completion
    return steps


def answer_calls(step: ThreadRunStep, outputs: dict[str, str], now: datetime) -> None:
    """The submitted outputs written into the step's calls; the step is done."""
    calls = step.step_details.get("tool_calls") or []
    answered = [{**c, "function": {**c["function"], "output": outputs.get(c["id"])}} for c in calls]
    step.step_details = {"type": "tool_calls", "tool_calls": answered}
    step.status, step.completed_at = "completed", now


def _step(
    run: ThreadRun, step_id: str | None, kind: str, status: str, details: dict[str, Any], at: datetime
) -> ThreadRunStep:
    return ThreadRunStep(
        id=step_id or new_id("step"),
        run_id=run.id,
        thread_id=run.thread_id,
        user_id=run.user_id,
        assistant_id=run.assistant_id,
        type=kind,
        status=status,
        step_details=details,
        created_at=at,
    )
