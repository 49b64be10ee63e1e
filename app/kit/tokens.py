"""Token counting with tiktoken: for estimates and for streams whose usage block never came.

Upstream usage is the billing truth; these counts fill in only when upstream could not say.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
from collections.abc import Iterable, Sequence
from functools import cache, lru_cache
from typing import Any

import tiktoken

from app.kit.token_client import TokenServerClient

DEFAULT_ENCODING = "o200k_base"
# Per OpenAI's cookbook ("How to count tokens with tiktoken") for current chat models.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3


_server: TokenServerClient | None = None


def use_token_server(path: str | None) -> None:
    """Count through the token server at ``path`` (see app.kit.token_server), or in process."""
    global _server
    if _server is not None:
        _server.close()
    _server = TokenServerClient(path) if path else None


def prepare(model: str) -> None:
    """Pays for the tables at start, not on a request: in this process, unless the token server
    answers."""
    if _server is None or _server.count(encoding_name(model), ["ready"]) is None:
        load_encoding(encoding_name(model))


@lru_cache(maxsize=256)
def encoding_name(model: str) -> str:
    """Newer or private models unknown to tiktoken get o200k_base, the current family's encoding."""
    try:
        return tiktoken.encoding_name_for_model(model.removeprefix("ft:").split(":", 1)[0])
    except KeyError:
        return DEFAULT_ENCODING


@cache
def load_encoding(name: str) -> tiktoken.Encoding:
    return _compacted(tiktoken.get_encoding(name))


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


def count_texts(model: str, texts: Sequence[str]) -> list[int]:
    """Each text's tokens, in one round trip to the token server when there is one."""
    name = encoding_name(model)
    counts = _server.count(name, texts) if _server is not None else None
    return counts if counts is not None else _count_here(name, texts)


async def acount_texts(model: str, texts: Sequence[str]) -> list[int]:
    """As ``count_texts``, without blocking the event loop while the token server counts."""
    name = encoding_name(model)
    counts = await _server.acount(name, texts) if _server is not None else None
    return counts if counts is not None else _count_here(name, texts)


def _count_here(name: str, texts: Sequence[str]) -> list[int]:
    encoding = load_encoding(name)
    return [len(encoding.encode(text, disallowed_special=())) for text in texts]


def count_text(model: str, text: str) -> int:
    return count_texts(model, [text])[0] if text else 0


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
    texts, overhead = _chat_texts(messages)
    return overhead + sum(count_texts(model, texts))


def _chat_texts(messages: list[Any]) -> tuple[list[str], int]:
    """The texts of a chat prompt, to count, and the cookbook's tokens around them."""
    texts: list[str] = []
    overhead = REPLY_PRIMING
    for message in messages:
        overhead += TOKENS_PER_MESSAGE
        texts.extend(_message_strings(message))
        if isinstance(message, dict) and "name" in message:
            overhead += TOKENS_PER_NAME
    return texts, overhead


def count_embedding_input(model: str, value: Any) -> int:
    """Embedding input may be text, a list of texts, token ids or lists of token ids."""
    texts: list[str] = []
    ids = _embedding_texts(value, texts)
    return ids + sum(count_texts(model, texts))


async def acount_embedding_input(model: str, value: Any) -> int:
    texts: list[str] = []
    ids = _embedding_texts(value, texts)
    return ids + sum(await acount_texts(model, texts))


def _embedding_texts(value: Any, texts: list[str]) -> int:
    """Collects the texts of ``value`` into ``texts``; returns how many token ids it holds."""
    if isinstance(value, str):
        texts.append(value)
    elif isinstance(value, list):
        if value and all(isinstance(v, int) for v in value):
            return len(value)
        return sum(_embedding_texts(v, texts) for v in value)
    return 0


# An upper bound for one image input: a high-detail 2048x2048 image on gpt-4o is 1,105 tokens.
IMAGE_TOKENS_UPPER_BOUND = 1_500


def estimate_chat_prompt(model: str, body: dict[str, Any]) -> int:
    """An upper bound on the prompt tokens of a chat request, for reserving money.

    Messages are counted exactly the cookbook way; tool and format definitions, which upstream
    renders into the prompt in its own way, are counted from their JSON text, which is longer.
    """
    texts, fixed = _chat_estimate_parts(body)
    return fixed + sum(count_texts(model, texts))


async def aestimate_chat_prompt(model: str, body: dict[str, Any]) -> int:
    texts, fixed = _chat_estimate_parts(body)
    return fixed + sum(await acount_texts(model, texts))


def _chat_estimate_parts(body: dict[str, Any]) -> tuple[list[str], int]:
    messages = body.get("messages")
    texts, fixed = _chat_texts(messages if isinstance(messages, list) else [])
    texts.extend(_definitions(body, ("tools", "functions", "response_format", "tool_choice")))
    return texts, fixed + IMAGE_TOKENS_UPPER_BOUND * _image_parts(messages)


def _definitions(body: dict[str, Any], fields: tuple[str, ...]) -> list[str]:
    return [json.dumps(body[f], separators=(",", ":")) for f in fields if body.get(f) is not None]


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
    texts, fixed = _responses_estimate_parts(body)
    return fixed + sum(count_texts(model, texts))


async def aestimate_responses_prompt(model: str, body: dict[str, Any]) -> int:
    texts, fixed = _responses_estimate_parts(body)
    return fixed + sum(await acount_texts(model, texts))


def _responses_estimate_parts(body: dict[str, Any]) -> tuple[list[str], int]:
    texts: list[str] = []
    total = REPLY_PRIMING
    instructions = body.get("instructions")
    if isinstance(instructions, str):
        total += TOKENS_PER_MESSAGE
        texts.append(instructions)
    value = body.get("input")
    items = [{"role": "user", "content": value}] if isinstance(value, str) else value
    for item in items if isinstance(items, list) else ():
        total += TOKENS_PER_MESSAGE + IMAGE_TOKENS_UPPER_BOUND * _item_images(item)
        texts.extend(_item_texts(item))
    texts.extend(_definitions(body, ("tools", "text", "tool_choice", "reasoning")))
    return texts, total


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
