"""Checks a fine-tuning file as it streams past, the way OpenAI's cookbook ("Data preparation and
analysis for chat model fine-tuning") recommends, and counts its training tokens.

Fed the file's bytes chunk by chunk, it keeps only the line being read (bounded by the longest
example allowed), so a file of any size is checked in bounded memory. The first bad line is the
answer: the caller stops the upload there, so upstream never stores a file that would fail.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from app.kit.tokens import REPLY_PRIMING, TOKENS_PER_MESSAGE, TOKENS_PER_NAME, count_text

# The cookbook's keys and roles, plus what OpenAI's chat format has added since (tool calls,
# tool results, developer messages).
MESSAGE_KEYS = frozenset({"role", "content", "name", "function_call", "tool_calls", "tool_call_id", "weight"})
ROLES = ("system", "developer", "user", "assistant", "tool", "function")
MIN_EXAMPLES = 10
# tiktoken's current family's encoding: the model is not known until a job is created.
COUNTING_MODEL = "gpt-4o-mini"
# A token is rarely more than a few bytes of UTF-8; a line longer than this many bytes per
# allowed token is over the limit whatever it holds, and is refused without being kept.
_MAX_BYTES_PER_TOKEN = 32


@dataclass(frozen=True, slots=True)
class FileProblem:
    line: int | None  # None: the file as a whole (too few examples)
    check: str  # the cookbook's name for the check
    reason: str

    @property
    def message(self) -> str:
        where = f", line {self.line}" if self.line is not None else ""
        return f"Invalid fine-tuning file{where}: {self.reason} ({self.check})."


@dataclass(frozen=True, slots=True)
class FileStats:
    examples: int
    tokens: int  # every example's tokens, summed: what one epoch trains on
    longest: int  # the longest example, in tokens


@dataclass
class FineTuneValidator:
    max_example_tokens: int
    min_examples: int = MIN_EXAMPLES
    problem: FileProblem | None = None
    examples: int = 0
    tokens: int = 0
    longest: int = 0
    _line: int = 0
    _buffer: bytearray = field(default_factory=bytearray)

    @property
    def max_line_bytes(self) -> int:
        return self.max_example_tokens * _MAX_BYTES_PER_TOKEN

    def feed(self, data: bytes) -> FileProblem | None:
        """Checks every line ``data`` completes; returns the first problem (and keeps it)."""
        if self.problem is not None:
            return self.problem
        start = 0
        while self.problem is None:
            end = data.find(b"\n", start)
            if end < 0:
                self._buffer += data[start:]
                if len(self._buffer) > self.max_line_bytes:
                    self._fail(self._line + 1, "example_too_long", self._too_long(None))
                break
            self._buffer += data[start:end]
            start = end + 1
            self._take_line()
        return self.problem

    def finish(self) -> FileProblem | FileStats:
        """The file has ended: its last line (without a newline) is checked, then the count."""
        if self.problem is None and self._buffer.strip():
            self._take_line()
        if self.problem is not None:
            return self.problem
        if self.examples < self.min_examples:
            self._fail(
                None,
                "too_few_examples",
                f"it has {self.examples} example{'s' if self.examples != 1 else ''}, "
                f"and fine-tuning needs at least {self.min_examples}",
            )
            assert self.problem is not None
            return self.problem
        return FileStats(self.examples, self.tokens, self.longest)

    def _take_line(self) -> None:
        self._line += 1
        raw, self._buffer = bytes(self._buffer), bytearray()
        if len(raw) > self.max_line_bytes:
            self._fail(self._line, "example_too_long", self._too_long(None))
            return
        if not raw.strip():
            return  # blank lines (a trailing newline, say) hold no example
        try:
            example = json.loads(raw)
        except UnicodeDecodeError:
            self._fail(self._line, "invalid_json", "the line is not valid UTF-8")
            return
        except ValueError as exc:
            self._fail(self._line, "invalid_json", f"the line is not valid JSON ({_json_error(exc)})")
            return
        problem = example_problem(example)
        if problem is not None:
            self._fail(self._line, *problem)
            return
        tokens = example_tokens(example)
        if tokens > self.max_example_tokens:
            self._fail(self._line, "example_too_long", self._too_long(tokens))
            return
        self.examples += 1
        self.tokens += tokens
        self.longest = max(self.longest, tokens)

    def _too_long(self, tokens: int | None) -> str:
        size = f"{tokens} tokens" if tokens is not None else f"more than {self.max_line_bytes} bytes"
        return f"the example is {size}, over the limit of {self.max_example_tokens} tokens per example"

    def _fail(self, line: int | None, check: str, reason: str) -> None:
        self.problem = FileProblem(line, check, reason)


def example_problem(example: Any) -> tuple[str, str] | None:
    """The cookbook's format checks on one example, in its order: (check, reason) or None."""
    if not isinstance(example, dict):
        return "data_type", "an example must be a JSON object"
    messages = example.get("messages")
    if not isinstance(messages, list) or not messages:
        return "missing_messages_list", "an example needs a non-empty 'messages' list"
    for index, message in enumerate(messages, 1):
        problem = _message_problem(index, message)
        if problem is not None:
            return problem
    if not any(message.get("role") == "assistant" for message in messages):
        return "example_missing_assistant_message", "the example has no assistant message"
    return None


def _message_problem(index: int, message: Any) -> tuple[str, str] | None:
    if not isinstance(message, dict):
        return "data_type", f"message {index} must be a JSON object"
    for key in ("role", "content"):
        if key not in message and not (key == "content" and _calls(message)):
            return "message_missing_key", f"message {index} has no '{key}'"
    unknown = sorted(k for k in message if k not in MESSAGE_KEYS)
    if unknown:
        return "message_unrecognized_key", f"message {index} has the unrecognized key '{unknown[0][:64]}'"
    role = message["role"]
    if role not in ROLES:
        shown = role[:64] if isinstance(role, str) else json.dumps(role)[:64]
        return "unrecognized_role", f"message {index} has the role '{shown}', not one of {', '.join(ROLES)}"
    content = message.get("content")
    if not _calls(message) and (not isinstance(content, str) or not content):
        return "missing_content", f"message {index} has no text content"
    if content is not None and not isinstance(content, str):
        return "missing_content", f"message {index} has content that is not text"
    return None


def _calls(message: dict[str, Any]) -> bool:
    """An assistant message that calls a function or tool may come without content."""
    return bool(message.get("function_call") or message.get("tool_calls"))


def example_tokens(example: dict[str, Any]) -> int:
    """The cookbook's count (3 tokens per message, 1 per name, 3 to prime the reply), plus the
    JSON text of tool and function definitions and calls, which the prompt also holds."""
    total = REPLY_PRIMING
    for message in example["messages"]:
        total += TOKENS_PER_MESSAGE
        for key, value in message.items():
            if isinstance(value, str):
                total += count_text(COUNTING_MODEL, value)
            elif key in ("function_call", "tool_calls"):
                total += count_text(COUNTING_MODEL, json.dumps(value, separators=(",", ":")))
            if key == "name":
                total += TOKENS_PER_NAME
    for key in ("tools", "functions"):
        if example.get(key):
            total += count_text(COUNTING_MODEL, json.dumps(example[key], separators=(",", ":")))
    return total


def _json_error(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at column {exc.colno}"
    return str(exc)[:100]


def auto_epochs(examples: int) -> int:
    """OpenAI's default number of epochs for ``n_epochs: "auto"``, as the cookbook states it."""
    target, min_target, max_target, min_epochs, max_epochs = 3, 100, 25_000, 1, 25
    if examples * target < min_target:
        return min(max_epochs, min_target // examples)
    if examples * target > max_target:
        return max(min_epochs, max_target // examples)
    return target
