"""The Batch API's requests as Tollgate reads them: the create body, each line of an input file
(what it may cost), and each line of an output file (what it did cost)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from app.errors import InvalidRequest
from app.gateway.service import tokens_from_usage
from app.kit.tokens import count_embedding_input, estimate_chat_prompt, estimate_responses_prompt
from app.responses.schemas import tokens_from_response_usage
from app.usage.pricing import TokenUsage

CHAT, EMBEDDINGS, RESPONSES = "/v1/chat/completions", "/v1/embeddings", "/v1/responses"
# The endpoints Tollgate can estimate a batch for (OpenAI's other batch endpoints are refused).
ENDPOINTS = (CHAT, EMBEDDINGS, RESPONSES)
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
# OpenAI's limit on the requests of one batch.
MAX_REQUESTS = 50_000


@dataclass(frozen=True, slots=True)
class BatchCreate:
    input_file_id: str
    endpoint: str


def parse_create(body: dict[str, Any]) -> BatchCreate:
    file_id, endpoint = body.get("input_file_id"), body.get("endpoint")
    if not isinstance(file_id, str) or not file_id:
        raise InvalidRequest("Missing required parameter: 'input_file_id'.", param="input_file_id")
    if endpoint not in ENDPOINTS:
        raise InvalidRequest(
            f"Tollgate runs batches for {', '.join(ENDPOINTS)} only, not '{str(endpoint)[:100]}'.",
            param="endpoint",
            code="invalid_value",
        )
    if body.get("completion_window") != "24h":
        raise InvalidRequest("'completion_window' must be '24h'.", param="completion_window", code="invalid_value")
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise InvalidRequest("'metadata' must be an object.", param="metadata")
    return BatchCreate(file_id, endpoint)


@dataclass(slots=True)
class InputTally:
    """The worst case of a batch's input file, line by line: prompt tokens (tiktoken's upper
    bound) and each request's output cap (its own, else the model's maximum output)."""

    endpoint: str
    max_output: dict[str, int]
    default_output: int
    model: str | None = None
    requests: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0
    custom_ids: set[str] = field(default_factory=set)

    def add(self, number: int, raw: bytes) -> None:
        line = _line_object(number, raw)
        check_url(number, line.get("url"), self.endpoint)
        body, model = line["body"], line["body"]["model"]
        if self.model is None:
            self.model = model
        elif model != self.model:
            raise _bad_line(
                number, f"uses model '{model[:100]}', but a batch's requests must all use one ('{self.model}')"
            )
        if line["custom_id"] in self.custom_ids:
            raise _bad_line(number, f"repeats custom_id '{line['custom_id'][:100]}'")
        self.custom_ids.add(line["custom_id"])
        self.requests += 1
        if self.requests > MAX_REQUESTS:
            raise InvalidRequest(f"A batch may hold at most {MAX_REQUESTS} requests.", param="input_file_id")
        self.prompt_tokens += self._prompt(model, body)
        self.output_tokens += self._output(number, model, body)

    def _prompt(self, model: str, body: dict[str, Any]) -> int:
        if self.endpoint == CHAT:
            return estimate_chat_prompt(model, body)
        if self.endpoint == EMBEDDINGS:
            return count_embedding_input(model, body.get("input"))
        return estimate_responses_prompt(model, body)

    def _output(self, number: int, model: str, body: dict[str, Any]) -> int:
        if self.endpoint == EMBEDDINGS:
            return 0
        names = ("max_output_tokens",) if self.endpoint == RESPONSES else ("max_completion_tokens", "max_tokens")
        cap = next((body[n] for n in names if body.get(n) is not None), None)
        if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap < 1):
            raise _bad_line(number, "has an output cap that is not a positive integer")
        choices = body.get("n", 1) if self.endpoint == CHAT else 1
        if not isinstance(choices, int) or isinstance(choices, bool) or choices < 1:
            raise _bad_line(number, "has an 'n' that is not a positive integer")
        return (cap or self.max_output.get(model, self.default_output)) * choices


def _line_object(number: int, raw: bytes) -> dict[str, Any]:
    try:
        line = json.loads(raw)
    except (ValueError, RecursionError):
        raise _bad_line(number, "is not valid JSON") from None
    if not isinstance(line, dict):
        raise _bad_line(number, "is not a JSON object")
    if not isinstance(line.get("custom_id"), str) or not line["custom_id"]:
        raise _bad_line(number, "has no 'custom_id' string")
    if line.get("method") != "POST":
        raise _bad_line(number, "must have method 'POST'")
    body = line.get("body")
    if not isinstance(body, dict) or not isinstance(body.get("model"), str) or not body["model"]:
        raise _bad_line(number, "needs a 'body' object with a 'model'")
    if body.get("stream") is True:
        raise _bad_line(number, "asks for a stream, which a batch cannot return")
    return line


def check_url(number: int, raw_url: Any, endpoint: str) -> None:
    if raw_url != endpoint:
        raise _bad_line(number, f"has url '{str(raw_url)[:100]}', but the batch's endpoint is '{endpoint}'")


def _bad_line(number: int, problem: str) -> InvalidRequest:
    return InvalidRequest(
        f"Line {number} of the input file {problem}.", param="input_file_id", code="invalid_batch_line"
    )


def output_usage(endpoint: str, raw: bytes) -> TokenUsage:
    """What one line of an output file consumed: its response's usage; nothing for a failed line
    (OpenAI does not bill those) or one that cannot be read."""
    try:
        line = json.loads(raw)
    except (ValueError, RecursionError):
        return TokenUsage()
    response = line.get("response") if isinstance(line, dict) else None
    body = response.get("body") if isinstance(response, dict) else None
    usage = body.get("usage") if isinstance(body, dict) else None
    if not isinstance(usage, dict) or not isinstance(response, dict) or response.get("status_code") != 200:
        return TokenUsage()
    if endpoint == RESPONSES:
        return tokens_from_response_usage(usage)
    return tokens_from_usage(usage)


def add_usage(a: TokenUsage, b: TokenUsage) -> TokenUsage:
    return TokenUsage(a.prompt + b.prompt, a.cached + b.cached, a.completion + b.completion, a.reasoning + b.reasoning)
