"""Token counting with tiktoken: for estimates and for streams whose usage block never came.

Upstream usage is the billing truth; these counts fill in only when upstream could not say.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import tiktoken

DEFAULT_ENCODING = "o200k_base"
# Per OpenAI's cookbook ("How to count tokens with tiktoken") for current chat models.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3


@lru_cache(maxsize=256)
def encoding_for(model: str) -> tiktoken.Encoding:
    """Newer or private models unknown to tiktoken get o200k_base, the current family's encoding."""
    name = model.removeprefix("ft:").split(":", 1)[0]
    try:
        encoding = tiktoken.encoding_for_model(name)
    except KeyError:
        encoding = tiktoken.get_encoding(DEFAULT_ENCODING)
    return _compacted(encoding)


def _compacted(encoding: tiktoken.Encoding) -> tiktoken.Encoding:
    """tiktoken keeps each merge table twice: in Rust, which does all the encoding, and as a Python
    dict that only pickling reads (25 MB of a worker for o200k_base, 11 MB for cl100k_base).
    Nothing here pickles an encoding, so the dict goes, and the heap it held goes back to the OS."""
    if encoding._mergeable_ranks:
        encoding._mergeable_ranks = {}
        gc.collect()
        _trim_heap()
    return encoding


def _trim_heap() -> None:
    # Without glibc there is no malloc_trim: the memory is reused by the process, just not returned.
    with contextlib.suppress(AttributeError, OSError):
        ctypes.CDLL(None).malloc_trim(0)


def count_text(model: str, text: str) -> int:
    if not text:
        return 0
    return len(encoding_for(model).encode(text, disallowed_special=()))


def _message_strings(message: Any) -> Iterable[str]:
    if not isinstance(message, dict):
        return
    for key, value in message.items():
        if isinstance(value, str):
            yield value
        elif key == "content" and isinstance(value, list):
            for part in value:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    yield part["text"]
        elif key == "tool_calls" and isinstance(value, list):
            for call in value:
                function = call.get("function") if isinstance(call, dict) else None
                if isinstance(function, dict):
                    yield str(function.get("name", ""))
                    yield str(function.get("arguments", ""))


def count_chat_prompt(model: str, messages: list[Any]) -> int:
    encoding = encoding_for(model)
    total = REPLY_PRIMING
    for message in messages:
        total += TOKENS_PER_MESSAGE
        for text in _message_strings(message):
            total += len(encoding.encode(text, disallowed_special=()))
        if isinstance(message, dict) and "name" in message:
            total += TOKENS_PER_NAME
    return total


def count_embedding_input(model: str, value: Any) -> int:
    """Embedding input may be text, a list of texts, token ids or lists of token ids."""
    if isinstance(value, str):
        return count_text(model, value)
    if isinstance(value, list):
        if value and all(isinstance(v, int) for v in value):
            return len(value)
        return sum(count_embedding_input(model, v) for v in value)
    return 0


# An upper bound for one image input: a high-detail 2048x2048 image on gpt-4o is 1,105 tokens.
IMAGE_TOKENS_UPPER_BOUND = 1_500


def estimate_chat_prompt(model: str, body: dict[str, Any]) -> int:
    """An upper bound on the prompt tokens of a chat request, for reserving money.

    Messages are counted exactly the cookbook way; tool and format definitions, which upstream
    renders into the prompt in its own way, are counted from their JSON text, which is longer.
    """
    messages = body.get("messages")
    total = count_chat_prompt(model, messages if isinstance(messages, list) else [])
    for extra in ("tools", "functions", "response_format", "tool_choice"):
        if body.get(extra) is not None:
            total += count_text(model, json.dumps(body[extra], separators=(",", ":")))
    return total + IMAGE_TOKENS_UPPER_BOUND * _image_parts(messages)


def _image_parts(messages: Any) -> int:
    count = 0
    for message in messages if isinstance(messages, list) else ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            count += sum(1 for p in content if isinstance(p, dict) and p.get("type") in ("image_url", "input_image"))
    return count


# Responses API input: the text-bearing fields of an input item and of its content parts.
_ITEM_TEXT_FIELDS = ("content", "output", "arguments", "name", "text", "input")
_IMAGE_PART_TYPES = frozenset({"input_image", "image_url"})


def estimate_responses_prompt(model: str, body: dict[str, Any]) -> int:
    """An upper bound on the prompt tokens of a Responses API request's own body (instructions,
    input, tool and format definitions). Context that upstream adds from a previous response or
    a conversation is not in the body; the caller adds it."""
    encoding = encoding_for(model)
    total = REPLY_PRIMING
    instructions = body.get("instructions")
    if isinstance(instructions, str):
        total += TOKENS_PER_MESSAGE + len(encoding.encode(instructions, disallowed_special=()))
    value = body.get("input")
    items = [{"role": "user", "content": value}] if isinstance(value, str) else value
    for item in items if isinstance(items, list) else ():
        total += TOKENS_PER_MESSAGE + sum(len(encoding.encode(t, disallowed_special=())) for t in _item_texts(item))
        total += IMAGE_TOKENS_UPPER_BOUND * _item_images(item)
    for extra in ("tools", "text", "tool_choice", "reasoning"):
        if body.get(extra) is not None:
            total += count_text(model, json.dumps(body[extra], separators=(",", ":")))
    return total


def _item_texts(item: Any) -> Iterable[str]:
    if not isinstance(item, dict):
        return
    for key in _ITEM_TEXT_FIELDS:
        value = item.get(key)
        if isinstance(value, str):
            yield value
        elif isinstance(value, list):
            for part in value:
                yield from _item_texts(part)


def _item_images(item: Any) -> int:
    content = item.get("content") if isinstance(item, dict) else None
    if not isinstance(content, list):
        return 0
    return sum(1 for p in content if isinstance(p, dict) and p.get("type") in _IMAGE_PART_TYPES)
