"""The fine-tune file check on its own: the cookbook's format checks with their exact messages,
token counts, any chunking of the stream, and the epochs heuristic."""

from __future__ import annotations

import json

import pytest

from app.fine_tuning.validation import FileProblem, FileStats, FineTuneValidator, auto_epochs, example_tokens
from tests.fine_tuning.data import example, good_file, lines, tokens_of


def _check(data: bytes, max_tokens: int = 1000, chunk: int | None = None) -> FileProblem | FileStats:
    validator = FineTuneValidator(max_example_tokens=max_tokens)
    step = chunk or len(data) or 1
    for start in range(0, len(data), step):
        if validator.feed(data[start : start + step]) is not None:
            break
    return validator.finish()


def _with(bad_line: bytes, at: int = 3) -> bytes:
    """A good file of 12 examples whose line ``at`` is ``bad_line``."""
    good = good_file(12).splitlines(keepends=True)
    good[at - 1] = bad_line + b"\n"
    return b"".join(good)


def _bad(messages: list[object]) -> bytes:
    return json.dumps({"messages": messages}).encode()


LONG = {"messages": [{"role": "user", "content": "word " * 400}, {"role": "assistant", "content": "ok"}]}


@pytest.mark.parametrize(
    ("data", "message", "check"),
    [
        (
            _with(b'{"messages": [{"role": "user", "content": "hi"}'),
            "Invalid fine-tuning file, line 3: the line is not valid JSON "
            "(Expecting ',' delimiter at column 48) (invalid_json).",
            "invalid_json",
        ),
        (
            _with(b"[1, 2]"),
            "Invalid fine-tuning file, line 3: an example must be a JSON object (data_type).",
            "data_type",
        ),
        (
            _with(b'{"prompt": "hi", "completion": "there"}', at=1),
            "Invalid fine-tuning file, line 1: an example needs a non-empty 'messages' list (missing_messages_list).",
            "missing_messages_list",
        ),
        (
            _with(_bad([{"role": "robot", "content": "beep"}, {"role": "assistant", "content": "ok"}]), at=7),
            "Invalid fine-tuning file, line 7: message 1 has the role 'robot', not one of system, developer, user, "
            "assistant, tool, function (unrecognized_role).",
            "unrecognized_role",
        ),
        (
            _with(_bad([{"content": "hi"}, {"role": "assistant", "content": "ok"}])),
            "Invalid fine-tuning file, line 3: message 1 has no 'role' (message_missing_key).",
            "message_missing_key",
        ),
        (
            _with(_bad([{"role": "user", "content": "hi", "mood": "happy"}, {"role": "assistant", "content": "ok"}])),
            "Invalid fine-tuning file, line 3: message 1 has the unrecognized key 'mood' (message_unrecognized_key).",
            "message_unrecognized_key",
        ),
        (
            _with(_bad([{"role": "user", "content": ""}, {"role": "assistant", "content": "ok"}])),
            "Invalid fine-tuning file, line 3: message 1 has no text content (missing_content).",
            "missing_content",
        ),
        (
            _with(_bad([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]), at=12),
            "Invalid fine-tuning file, line 12: the example has no assistant message "
            "(example_missing_assistant_message).",
            "example_missing_assistant_message",
        ),
        (
            good_file(9),
            "Invalid fine-tuning file: it has 9 examples, and fine-tuning needs at least 10 (too_few_examples).",
            "too_few_examples",
        ),
        (
            _with(json.dumps(LONG).encode(), at=5),
            f"Invalid fine-tuning file, line 5: the example is {example_tokens(LONG)} tokens, over the limit of 300 "
            "tokens per example (example_too_long).",
            "example_too_long",
        ),
        (
            _with(b'{"messages": "' + b"x" * 20_000 + b'"}', at=2),
            "Invalid fine-tuning file, line 2: the example is more than 9600 bytes, over the limit of 300 tokens "
            "per example (example_too_long).",
            "example_too_long",
        ),
    ],
    ids=[
        "bad_json_line",
        "data_type",
        "missing_messages",
        "bad_role",
        "missing_role",
        "unrecognized_key",
        "empty_content",
        "no_assistant",
        "too_few_examples",
        "too_long_example",
        "line_too_long_to_hold",
    ],
)
@pytest.mark.parametrize("chunk", [None, 1, 7, 4096])
def test_bad_files_name_the_first_bad_line_and_why(data: bytes, message: str, check: str, chunk: int | None) -> None:
    problem = _check(data, max_tokens=300, chunk=chunk)
    assert isinstance(problem, FileProblem)
    assert (problem.message, problem.check) == (message, check)


@pytest.mark.parametrize("chunk", [None, 1, 13, 65536])
def test_a_good_file_is_counted_the_cookbook_way(chunk: int | None) -> None:
    stats = _check(good_file(12), chunk=chunk)
    assert stats == FileStats(
        examples=12, tokens=tokens_of(12), longest=max(example_tokens(example(i)) for i in range(12))
    )
    # Per message 3, plus its role (1 token each here) and content (6, 8 and 1), plus 3 to prime the reply.
    assert example_tokens(example(0)) == (3 + 1 + 6) + (3 + 1 + 8) + (3 + 1 + 1) + 3


def test_blank_lines_a_missing_final_newline_and_tool_calls_are_fine() -> None:
    call = {
        "messages": [
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "tool_calls": [{"id": "c", "type": "function", "function": {"name": "w", "arguments": "{}"}}],
            },
            {"role": "tool", "tool_call_id": "c", "content": "sunny"},
            {"role": "assistant", "content": "Sunny.", "weight": 1},
        ]
    }
    data = lines([example(i) for i in range(10)]) + b"\n\n" + json.dumps(call).encode()
    stats = _check(data)
    assert isinstance(stats, FileStats) and stats.examples == 11


def test_the_first_problem_wins() -> None:
    data = _with(b"not json", at=2)
    data = data.replace(data.splitlines()[5], b"[]")
    problem = _check(data)
    assert isinstance(problem, FileProblem) and (problem.line, problem.check) == (2, "invalid_json")


@pytest.mark.parametrize(
    ("examples", "epochs"), [(10, 10), (33, 3), (34, 3), (1000, 3), (8333, 3), (8334, 2), (30000, 1)]
)
def test_auto_epochs_follow_the_cookbook(examples: int, epochs: int) -> None:
    assert auto_epochs(examples) == epochs
