"""The mock upstream over real HTTP, driven through httpx and the official openai SDK."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import openai
import pytest
import tiktoken
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam
from starlette.applications import Starlette

from app.mock_upstream import (
    LEAKED_API_KEY,
    MOCK_ORGANIZATION,
    MockConfig,
    count_chat_prompt_tokens,
    create_mock_app,
)
from tests.fixtures.live_server import LiveServer

MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "name": "alice", "content": [{"type": "text", "text": "Say hello to Tollgate."}]},
]
O200K = tiktoken.get_encoding("o200k_base")
CL100K = tiktoken.get_encoding("cl100k_base")


@pytest.fixture(scope="module")
def mock_app() -> Starlette:
    return create_mock_app()


@pytest.fixture(scope="module")
def server(mock_app: Starlette) -> Iterator[LiveServer]:
    with LiveServer(mock_app) as live:
        yield live


@pytest.fixture
def client(server: LiveServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.url + "/v1", api_key="sk-test", max_retries=0) as sdk:
        yield sdk


@pytest.fixture
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=5) as raw:
        yield raw


def _wait_for(condition: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_chat_completion_shape_and_usage(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    assert completion.id.startswith("chatcmpl-mock-")
    assert completion.object == "chat.completion"
    assert completion.model == "gpt-4o-mini"
    assert completion.system_fingerprint
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    content = choice.message.content
    assert content is not None
    assert content.startswith("This is a deterministic mock reply from the fake upstream")
    assert len(content.split(" ")) == 12
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens == count_chat_prompt_tokens(MESSAGES)
    assert usage.completion_tokens == len(O200K.encode(content))
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 0
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 0


def test_count_chat_prompt_tokens_follows_the_cookbook() -> None:
    messages = [{"role": "user", "content": "hi", "name": "bob"}]
    expected = 3 + 3 + len(O200K.encode("user")) + len(O200K.encode("hi")) + len(O200K.encode("bob")) + 1
    assert count_chat_prompt_tokens(messages) == expected


def test_max_tokens_cuts_the_reply(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, max_completion_tokens=5, extra_body={"mock": {"words": 40}}
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert 0 < completion.usage.completion_tokens <= 5
    assert completion.usage.completion_tokens == len(O200K.encode(completion.choices[0].message.content or ""))


def test_usage_controls(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="o4-mini",
        messages=MESSAGES,
        extra_body={"mock": {"content": "Exactly  this.", "cached_tokens": 4, "reasoning_tokens": 7}},
    )
    assert completion.choices[0].message.content == "Exactly  this."
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens_details is not None
    assert usage.completion_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 4
    assert usage.completion_tokens_details.reasoning_tokens == 7
    assert usage.completion_tokens == len(O200K.encode("Exactly  this.")) + 7

    bare = client.chat.completions.create(
        model="o4-mini",
        messages=MESSAGES,
        extra_body={"mock": {"no_usage": True}},
    )
    assert bare.usage is None


def test_stream_without_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_body={"mock": {"words": 3}}
    )
    chunks = list(stream)

    assert [c.object for c in chunks] == ["chat.completion.chunk"] * 5
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].delta.content for c in chunks[1:4]] == ["This", " is", " a"]
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)


def test_stream_with_include_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split(" ")) == 12
    assert all(c.usage is None for c in chunks[:-1])
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.prompt_tokens == count_chat_prompt_tokens(MESSAGES)
    assert last.usage.completion_tokens == len(O200K.encode(text))


def test_raw_stream_format(http: httpx.Client) -> None:
    body = {"model": "m", "messages": MESSAGES, "stream": True, "mock": {"words": 1, "malformed": True}}
    response = http.post("/v1/chat/completions", json=body)

    assert response.headers["content-type"].startswith("text/event-stream")
    events = response.text.split("\n\n")
    assert events[-1] == ""
    assert events[-2] == "data: [DONE]"
    assert "data: {not json" in events
    first = json.loads(events[0].removeprefix("data: "))
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert '{"id":' in events[0]  # compact separators


def test_tool_call(client: openai.OpenAI) -> None:
    tools: list[ChatCompletionToolParam] = [
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    ]
    mock = {"mock": {"tool_call": {"name": "get_weather", "arguments": '{"city": "Paris, France"}'}}}
    completion = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, tools=tools, extra_body=mock)
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    call: Any = choice.message.tool_calls[0]
    assert call.id.startswith("call_mock_")
    assert (call.function.name, call.function.arguments) == ("get_weather", '{"city": "Paris, France"}')

    chunks = list(
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES, tools=tools, extra_body=mock, stream=True)
    )
    deltas = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas[0].function is not None
    assert deltas[0].function.name == "get_weather"
    assert "".join(d.function.arguments or "" for d in deltas if d.function) == '{"city": "Paris, France"}'
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_embeddings_via_sdk(client: openai.OpenAI) -> None:
    inputs = ["hello world", "a second, longer input"]
    default = client.embeddings.create(model="text-embedding-3-small", input=inputs)  # SDK asks for base64
    as_float = client.embeddings.create(model="text-embedding-3-small", input=inputs, encoding_format="float")

    assert [item.embedding for item in default.data] == [item.embedding for item in as_float.data]
    assert [len(item.embedding) for item in default.data] == [8, 8]
    assert default.data[0].embedding != default.data[1].embedding
    assert sum(v * v for v in default.data[0].embedding) == pytest.approx(1.0, abs=1e-5)
    expected_tokens = sum(len(CL100K.encode(text)) for text in inputs)
    assert default.usage.prompt_tokens == default.usage.total_tokens == expected_tokens

    wide = client.embeddings.create(model="text-embedding-3-large", input="hello world", dimensions=64)
    assert len(wide.data[0].embedding) == 64
    tokens = client.embeddings.create(model="text-embedding-3-small", input=[[1, 2, 3], [4, 5]])
    assert len(tokens.data) == 2
    assert tokens.usage.prompt_tokens == 5


def test_models(client: openai.OpenAI) -> None:
    ids = [model.id for model in client.models.list()]
    assert {"gpt-4o-mini", "text-embedding-3-large"} <= set(ids)
    assert client.models.retrieve("o4-mini").owned_by == "openai"
    with pytest.raises(openai.NotFoundError) as excinfo:
        client.models.retrieve("gpt-nonexistent")
    assert excinfo.value.code == "model_not_found"


def test_status_control_leaks_secrets_and_sets_retry_after(http: httpx.Client, client: openai.OpenAI) -> None:
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "mock": {"status": 429, "retry_after": 7}}
    response = http.post("/v1/chat/completions", json=body)

    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    error = response.json()["error"]
    assert error["code"] == "rate_limit_exceeded"
    assert LEAKED_API_KEY in error["message"]
    assert MOCK_ORGANIZATION in error["message"]

    with pytest.raises(openai.InternalServerError) as excinfo:
        client.embeddings.create(model="m", input="x", extra_body={"mock": {"status": 503}})
    assert excinfo.value.status_code == 503
    assert LEAKED_API_KEY in excinfo.value.message


def test_response_headers(http: httpx.Client) -> None:
    first = http.get("/v1/models")
    second = http.get("/v1/models")
    for response in (first, second):
        assert response.headers["x-request-id"].startswith("req_mock_")
        assert response.headers["openai-organization"] == MOCK_ORGANIZATION
        assert int(response.headers["openai-processing-ms"]) >= 0
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


def test_delay_control(http: httpx.Client) -> None:
    started = time.monotonic()
    http.post("/v1/embeddings", json={"model": "m", "input": "x", "mock": {"delay_ms": 200}})
    assert time.monotonic() - started >= 0.2


def test_malformed_json(http: httpx.Client) -> None:
    body = {"model": "m", "messages": MESSAGES, "mock": {"malformed": True}}
    response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_drop_after_breaks_the_stream(mock_app: Starlette, client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_body={"mock": {"drop_after": 2}}
    )
    received: list[str] = []

    def consume() -> None:
        for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")

    with pytest.raises(openai.APIConnectionError) as excinfo:
        consume()
    assert not isinstance(excinfo.value, openai.APITimeoutError)
    assert "incomplete chunked read" in str(excinfo.value.__cause__)
    assert "".join(received) == "This is"
    assert _wait_for(lambda: mock_app.state.open_streams == 0)


def test_stall_after_hits_the_read_timeout(client: openai.OpenAI) -> None:
    stream = client.with_options(timeout=openai.Timeout(5, read=0.3)).chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_body={"mock": {"stall_after": 1}}
    )
    with pytest.raises(openai.APITimeoutError), contextlib.closing(stream):
        for _ in stream:
            pass


def test_open_streams_drop_to_zero_when_client_leaves(mock_app: Starlette, client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_body={"mock": {"stall_after": 2}}
    )
    iterator = iter(stream)
    next(iterator)
    assert _wait_for(lambda: mock_app.state.open_streams == 1)
    stream.close()
    assert _wait_for(lambda: mock_app.state.open_streams == 0)


def test_api_key_mismatch_is_401() -> None:
    with LiveServer(create_mock_app(MockConfig(api_key="sk-upstream-right"))) as live:
        wrong = openai.OpenAI(base_url=live.url + "/v1", api_key="sk-upstream-wrong", max_retries=0)
        with wrong, pytest.raises(openai.AuthenticationError) as excinfo:
            wrong.models.list()
        assert excinfo.value.code == "invalid_api_key"
        right = openai.OpenAI(base_url=live.url + "/v1", api_key="sk-upstream-right", max_retries=0)
        with right:
            assert right.models.list().data


def test_unknown_path_is_an_openai_404(http: httpx.Client) -> None:
    response = http.post("/v1/nope", json={})
    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "message": "Invalid URL (POST /v1/nope)",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
    assert http.get("/v1/chat/completions").json()["error"]["message"] == "Invalid URL (GET /v1/chat/completions)"


def test_requests_are_recorded(mock_app: Starlette, client: openai.OpenAI) -> None:
    client.embeddings.create(model="text-embedding-3-small", input="record me", extra_body={"mock": {"x": 1}})
    recorded = mock_app.state.requests[-1]
    assert (recorded.method, recorded.path) == ("POST", "/v1/embeddings")
    assert recorded.headers["authorization"] == "Bearer sk-test"
    assert recorded.body["input"] == "record me"
    assert recorded.body["mock"] == {"x": 1}


def test_live_server_surfaces_lifespan_errors() -> None:
    @contextlib.asynccontextmanager
    async def broken(app: Starlette) -> AsyncIterator[None]:
        raise ValueError("database unreachable")
        yield  # pragma: no cover

    with pytest.raises(RuntimeError, match="failed to start") as excinfo:
        LiveServer(Starlette(lifespan=broken)).start()
    assert isinstance(excinfo.value.__cause__, ValueError)
