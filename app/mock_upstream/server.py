"""A fake OpenAI API served over real HTTP, for local development and the test suite.

``create_mock_app`` builds the Starlette app; ``serve`` runs it with uvicorn (``tollgate mock-upstream``).
Per-request behaviour is steered by the ``"mock"`` body object, see ``prelude.MockControls``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
import math
import random
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from app.mock_upstream import batches, conversations, files, fine_tuning, media, responses, vector_stores
from app.mock_upstream.chat import (
    StreamAbortedError,
    StreamOptions,
    completion_payload,
    count_tokens,
    plan_chat,
    stream_events,
    validate_chat_body,
)
from app.mock_upstream.legacy import (
    completion_events,
    completion_plan,
    moderation_inputs,
    moderation_payload,
    prompts_of,
)
from app.mock_upstream.prelude import MockControls, MockPrelude, RecordedRequest, error_body, json_response
from app.mock_upstream.sse import EventStream, tracked
from app.mock_upstream.store import MockStore

__all__ = ["MODELS", "MockConfig", "RecordedRequest", "create_mock_app", "embedding_vector", "serve"]

MODELS: dict[str, int] = {
    "gpt-4o-mini": 1721172741,
    "gpt-4o": 1715367049,
    "gpt-4.1-mini": 1744318173,
    "gpt-4.1-nano": 1744321707,
    "o4-mini": 1744225351,
    "text-embedding-3-small": 1705948997,
    "text-embedding-3-large": 1705953180,
    "gpt-3.5-turbo-instruct": 1692901427,
    "omni-moderation-latest": 1731689265,
    "dall-e-2": 1698798177,
    "dall-e-3": 1698785189,
    "gpt-image-1": 1745517030,
    "tts-1": 1681940951,
    "tts-1-hd": 1699046015,
    "gpt-4o-mini-tts": 1742403959,
    "whisper-1": 1677532384,
    "gpt-4o-transcribe": 1742068463,
}
DEFAULT_EMBEDDING_DIMENSIONS = 8


@dataclass
class MockConfig:
    api_key: str | None = None
    latency_ms: int = 0
    chunk_delay_ms: int = 0


@dataclass
class _Ids:
    completions: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    calls: itertools.count[int] = field(default_factory=lambda: itertools.count(1))


def create_mock_app(config: MockConfig | None = None) -> Starlette:
    config = config or MockConfig()
    routes = [
        Route("/v1/chat/completions", _chat_completions, methods=["POST"]),
        Route("/v1/embeddings", _embeddings, methods=["POST"]),
        Route("/v1/completions", _completions, methods=["POST"]),
        Route("/v1/moderations", _moderations, methods=["POST"]),
        Route("/v1/images/generations", media.image_generations, methods=["POST"]),
        Route("/v1/images/edits", media.image_uploads, methods=["POST"]),
        Route("/v1/images/variations", media.image_uploads, methods=["POST"]),
        Route("/v1/audio/speech", media.speech, methods=["POST"]),
        Route("/v1/audio/transcriptions", media.transcriptions, methods=["POST"]),
        Route("/v1/audio/translations", media.transcriptions, methods=["POST"]),
        Route("/v1/models", _list_models, methods=["GET"]),
        Route("/v1/models/{model:path}", _retrieve_model, methods=["GET"]),
        Route("/v1/responses", responses.create_response, methods=["POST"]),
        Route("/v1/responses/{response_id}", responses.retrieve_response, methods=["GET"]),
        Route("/v1/responses/{response_id}", responses.delete_response, methods=["DELETE"]),
        Route("/v1/responses/{response_id}/cancel", responses.cancel_response, methods=["POST"]),
        Route("/v1/responses/{response_id}/input_items", responses.list_input_items, methods=["GET"]),
        Route("/v1/conversations", conversations.create_conversation, methods=["POST"]),
        Route("/v1/conversations/{conversation_id}", conversations.retrieve_conversation, methods=["GET"]),
        Route("/v1/conversations/{conversation_id}", conversations.update_conversation, methods=["POST"]),
        Route("/v1/conversations/{conversation_id}", conversations.delete_conversation, methods=["DELETE"]),
        Route("/v1/conversations/{conversation_id}/items", conversations.create_items, methods=["POST"]),
        Route("/v1/conversations/{conversation_id}/items", conversations.list_items, methods=["GET"]),
        Route("/v1/conversations/{conversation_id}/items/{item_id}", conversations.retrieve_item, methods=["GET"]),
        Route("/v1/conversations/{conversation_id}/items/{item_id}", conversations.delete_item, methods=["DELETE"]),
        *files.routes(),
        *vector_stores.ROUTES,
        *batches.ROUTES,
        *fine_tuning.ROUTES,
    ]
    ids = _Ids()
    requests: list[RecordedRequest] = []
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(
                MockPrelude,
                api_key=config.api_key,
                latency_ms=config.latency_ms,
                requests=requests,
                request_ids=itertools.count(1),
            )
        ],
        exception_handlers={404: _invalid_url, 405: _invalid_url},
        lifespan=_preload_encodings,
    )
    app.state.config = config
    app.state.ids = ids
    app.state.requests = requests
    app.state.open_streams = 0
    app.state.streamed_bytes = 0
    app.state.store = MockStore()
    app.state.files = files.FileStore()
    return app


@contextlib.asynccontextmanager
async def _preload_encodings(app: Starlette) -> AsyncIterator[None]:
    # Loading a tiktoken encoding takes ~0.5 s; doing it at startup keeps the first request from tripping
    # the tight client timeouts that tests use.
    count_tokens("", "o200k_base")
    count_tokens("", "cl100k_base")
    try:
        yield
    finally:
        app.state.files.close()


def serve(host: str, port: int, config: MockConfig) -> None:
    uvicorn.run(create_mock_app(config), host=host, port=port, log_level="info")


def _ok_json(payload: dict[str, Any], controls: MockControls) -> Response:
    if controls.pad_bytes:
        payload = {**payload, "padding": "x" * controls.pad_bytes}
    if controls.malformed:
        # A 200 whose body stops mid-object, like a proxy truncating the upstream answer.
        text = json.dumps(payload)
        return Response(text[: len(text) // 2], media_type="application/json")
    if controls.cut_body:
        return _cut_off(json.dumps(payload).encode())
    return json_response(payload)


def _cut_off(body: bytes) -> Response:
    """A 200 that declares its whole length, sends half and drops the connection."""

    async def half() -> AsyncIterator[bytes]:
        yield body[: len(body) // 2]
        raise StreamAbortedError("mock upstream: cut_body, dropping the connection mid-answer")

    headers = {"content-length": str(len(body))}
    return StreamingResponse(half(), media_type="application/json", headers=headers)


def _bad_request(message: str, param: str | None = None) -> Response:
    return json_response(error_body(message, "invalid_request_error", param=param), 400)


def _controls(request: Request) -> MockControls:
    controls = request.state.mock_controls
    assert isinstance(controls, MockControls)
    return controls


async def _invalid_url(request: Request, exc: Exception) -> Response:
    message = f"Invalid URL ({request.method} {request.url.path})"
    return json_response(error_body(message, "invalid_request_error"), 404)


async def _list_models(request: Request) -> Response:
    return json_response({"object": "list", "data": [_model(name) for name in MODELS]})


async def _retrieve_model(request: Request) -> Response:
    name = request.path_params["model"]
    if name not in MODELS:
        message = f"The model '{name}' does not exist or you do not have access to it."
        return json_response(error_body(message, "invalid_request_error", param="model", code="model_not_found"), 404)
    return json_response(_model(name))


def _model(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": MODELS[name], "owned_by": "openai"}


async def _chat_completions(request: Request) -> Response:
    body = request.state.mock_body
    problem = validate_chat_body(body)
    if problem is not None:
        return _bad_request(problem)
    controls = _controls(request)
    ids: _Ids = request.app.state.ids
    plan = plan_chat(
        body,
        controls,
        completion_id=f"chatcmpl-mock-{next(ids.completions)}",
        call_id=f"call_mock_{next(ids.calls)}",
    )
    if body.get("stream") is not True:
        return _ok_json(completion_payload(plan), controls)
    stream_options = body.get("stream_options")
    config: MockConfig = request.app.state.config
    chunk_delay_ms = controls.chunk_delay_ms if controls.chunk_delay_ms is not None else config.chunk_delay_ms
    options = StreamOptions(
        include_usage=isinstance(stream_options, dict) and stream_options.get("include_usage") is True,
        chunk_delay_s=chunk_delay_ms / 1000,
        drop_after=controls.drop_after,
        stall_after=controls.stall_after,
        malformed=controls.malformed,
    )
    return EventStream(tracked(request.app.state, stream_events(plan, options)))


async def _completions(request: Request) -> Response:
    body = request.state.mock_body
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        return _bad_request("you must provide a model parameter", "model")
    if prompts_of(body) is None:
        return _bad_request("'$.prompt' is invalid. Please check the API reference.", "prompt")
    controls = _controls(request)
    ids: _Ids = request.app.state.ids
    payload, pieces = completion_plan(body, controls, f"cmpl-mock-{next(ids.completions)}")
    if body.get("stream") is not True:
        return _ok_json(payload, controls)
    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    return EventStream(tracked(request.app.state, completion_events(payload, pieces, include_usage)))


async def _moderations(request: Request) -> Response:
    body = request.state.mock_body
    texts = moderation_inputs(body) if isinstance(body, dict) else None
    if texts is None:
        return _bad_request("'$.input' is invalid. Please check the API reference.", "input")
    model = body.get("model") or "omni-moderation-latest"
    if not isinstance(model, str) or "moderation" not in model:
        return _bad_request(f"The model '{model}' is not a moderation model.", "model")
    ids: _Ids = request.app.state.ids
    return _ok_json(moderation_payload(texts, model, f"modr-mock-{next(ids.completions)}"), _controls(request))


async def _embeddings(request: Request) -> Response:
    body = request.state.mock_body
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        return _bad_request("you must provide a model parameter", "model")
    items = _embedding_items(body.get("input"))
    if items is None:
        return _bad_request("'$.input' is invalid. Please check the API reference.", "input")
    dimensions = body.get("dimensions", DEFAULT_EMBEDDING_DIMENSIONS)
    if not isinstance(dimensions, int) or isinstance(dimensions, bool) or not 0 < dimensions <= 4096:
        return _bad_request("'dimensions' must be a positive integer.", "dimensions")
    encoding_format = body.get("encoding_format", "float")
    if encoding_format not in ("float", "base64"):
        return _bad_request("'encoding_format' must be 'float' or 'base64'.", "encoding_format")
    data = []
    for index, item in enumerate(items):
        vector = embedding_vector(item, dimensions)
        encoded: Any = vector
        if encoding_format == "base64":
            encoded = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    tokens = sum(len(item) if isinstance(item, list) else count_tokens(item, "cl100k_base") for item in items)
    payload = {
        "object": "list",
        "data": data,
        "model": body["model"],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    controls = _controls(request)
    if controls.no_usage:
        del payload["usage"]
    return _ok_json(payload, controls)


def _embedding_items(value: Any) -> list[str | list[int]] | None:
    """Normalise OpenAI's four accepted ``input`` shapes to one item per embedding, None if invalid."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not value:
        return None
    if all(isinstance(item, str) for item in value):
        return list(value)
    if _is_token_list(value):
        return [value]
    if all(_is_token_list(item) for item in value):
        return list(value)
    return None


def _is_token_list(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(token, int) and not isinstance(token, bool) for token in value)
    )


def embedding_vector(item: str | list[int], dimensions: int) -> list[float]:
    """A unit-length vector seeded by a hash of the input, rounded to float32 so that the float and the
    base64 encodings decode to identical numbers."""
    # Distinct prefixes keep the text "[1, 2]" and the token list [1, 2] from sharing a vector.
    raw = b"str:" + item.encode() if isinstance(item, str) else b"tok:" + json.dumps(item).encode()
    rng = random.Random(int.from_bytes(hashlib.sha256(raw).digest()))
    values = [rng.uniform(-1.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return list(struct.unpack(f"<{dimensions}f", struct.pack(f"<{dimensions}f", *(v / norm for v in values))))
