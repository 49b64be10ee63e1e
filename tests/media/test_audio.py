"""Audio end to end: speech (bytes streamed back), transcriptions and translations (multipart
uploads), priced per character, per second of audio or by tokens."""

from __future__ import annotations

import json
import math
import struct
from decimal import Decimal

import openai
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from app.mock_upstream.chat import count_tokens
from app.mock_upstream.media import AUDIO_BYTES_PER_CHAR, SPEECH_TOKENS_PER_CHAR
from tests.fixtures.live_server import LiveServer
from tests.fixtures.servers import Admin, Tenant, lease_count, usage_rows

TEXT = "Hello from the gateway."


def wav(seconds: float, rate: int = 16_000) -> bytes:
    """A PCM WAV of silence: 16-bit mono, so ``rate * 2`` bytes per second."""
    data = b"\0\0" * int(seconds * rate)
    fmt = struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, 1, rate, rate * 2, 2, 16)
    return b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE" + fmt + b"data" + struct.pack("<I", len(data)) + data


WAV = ("speech.wav", wav(2.5), "audio/wav")  # 2.5 s: whisper-1 at $0.006/min is 100 micro-dollars a second


async def test_tts_1_streams_audio_and_bills_per_character(
    tollgate: LiveServer, admin: Admin, engine: AsyncEngine
) -> None:
    tenant = await admin.tenant()
    budget_id = await admin.budget("key", tenant.key_id, "1")
    async with tenant.client(tollgate.url).audio.speech.with_streaming_response.create(
        model="tts-1-hd", voice="alloy", input=TEXT
    ) as response:
        assert response.headers["content-type"] == "audio/mpeg"
        audio = b"".join([piece async for piece in response.iter_bytes()])
    assert len(audio) == len(TEXT) * AUDIO_BYTES_PER_CHAR
    [row] = await usage_rows(engine, tenant.key_id)
    # tts-1-hd: $30 per million characters, i.e. 30 micro-dollars a character.
    assert (row.endpoint, row.model, row.status) == ("audio.speech", "tts-1-hd", "ok")
    assert (row.cost_micros, row.unit, row.units) == (30 * len(TEXT), "character", len(TEXT))
    state = await admin.budget_state(budget_id)
    assert (state["spent_micros"], state["reserved_micros"]) == (30 * len(TEXT), 0)


async def test_gpt_4o_mini_tts_sse_is_billed_from_its_usage_event(
    tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine
) -> None:
    async with tenant.http(tollgate.url) as http:
        body = {"model": "gpt-4o-mini-tts", "voice": "alloy", "input": TEXT, "stream_format": "sse"}
        response = await http.post("/v1/audio/speech", json=body)
    assert response.status_code == 200
    assert b"speech.audio.done" in response.content
    prompt, output = count_tokens(TEXT), len(TEXT) * SPEECH_TOKENS_PER_CHAR
    [row] = await usage_rows(engine, tenant.key_id)
    assert (row.prompt_tokens, row.completion_tokens, row.usage_source) == (prompt, output, "upstream")
    # $0.60 per million input tokens, $12 per million output (audio) tokens.
    assert row.cost_micros == math.ceil(prompt * Decimal("0.6") + output * Decimal(12))


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "tts-1", "input": "hi"}, "voice"),
        ({"model": "tts-1", "voice": "alloy"}, "input"),
        ({"model": "tts-1", "voice": "alloy", "input": "x" * 4097}, "input"),
        ({"model": "tts-1", "voice": "alloy", "input": "hi", "speed": 9}, "speed"),
    ],
)
async def test_bad_speech_requests_are_400_and_not_billed(
    tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine, body: dict[str, object], param: str
) -> None:
    async with tenant.http(tollgate.url) as http:
        response = await http.post("/v1/audio/speech", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert await usage_rows(engine, tenant.key_id) == []


async def test_speech_budget_refusal_and_forbidden_model(
    tollgate: LiveServer, admin: Admin, engine: AsyncEngine, mock_app: Starlette
) -> None:
    poor = await admin.tenant()
    await admin.budget("key", poor.key_id, "0.0001")  # 100 micro-dollars: 7 tts-1 characters at most
    before = len(mock_app.state.requests)
    with pytest.raises(openai.RateLimitError) as caught:
        await poor.client(tollgate.url).audio.speech.create(model="tts-1", voice="alloy", input=TEXT)
    assert caught.value.code == "key_budget_exceeded"
    limited = await admin.tenant(models=["tts-1"])
    with pytest.raises(openai.NotFoundError):
        await limited.client(tollgate.url).audio.speech.create(model="tts-1-hd", voice="alloy", input=TEXT)
    assert len(mock_app.state.requests) == before
    assert await usage_rows(engine, poor.key_id) == await usage_rows(engine, limited.key_id) == []
    assert await lease_count(engine, poor.key_id) == 0


async def test_whisper_transcription_is_billed_for_upstreams_seconds(
    tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine, mock_app: Starlette
) -> None:
    raw = await tenant.client(tollgate.url).audio.transcriptions.with_raw_response.create(model="whisper-1", file=WAV)
    assert raw.parse().text
    assert mock_app.state.requests[-1].path == "/v1/audio/transcriptions"
    [row] = await usage_rows(engine, tenant.key_id)
    # The json answer's usage says 3 seconds (upstream rounds up).
    assert (row.endpoint, row.cost_micros, row.unit, row.units, row.usage_source) == (
        "audio.transcriptions",
        300,
        "second",
        3,
        "upstream",
    )


@pytest.mark.parametrize(
    ("response_format", "source"),
    [("verbose_json", "upstream"), ("srt", "upstream"), ("vtt", "upstream"), ("text", "estimated")],
)
async def test_whisper_duration_comes_from_the_answer_or_the_wav_header(
    tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine, response_format: str, source: str
) -> None:
    """Without a usage block: verbose_json's duration, the last subtitle cue, or (text) the
    estimate made from the upload, exact for a WAV."""
    async with tenant.http(tollgate.url) as http:
        response = await http.post(
            "/v1/audio/translations",
            files={"file": WAV},
            data={"model": "whisper-1", "response_format": response_format, "mock": json.dumps({"no_usage": True})},
        )
    assert response.status_code == 200, response.text
    [row] = await usage_rows(engine, tenant.key_id)
    assert (row.endpoint, row.cost_micros, row.units, row.usage_source) == ("audio.translations", 250, 3, source)


async def test_gpt_4o_transcribe_is_billed_from_token_usage(
    tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine
) -> None:
    result = await tenant.client(tollgate.url).audio.transcriptions.create(
        model="gpt-4o-transcribe", file=WAV, prompt="A greeting."
    )
    assert result.usage is not None and result.usage.type == "tokens"
    audio, text_in = 25, count_tokens("A greeting.")  # the mock: 10 audio tokens a second
    output = count_tokens("This is a deterministic mock transcript.")
    [row] = await usage_rows(engine, tenant.key_id)
    assert (row.prompt_tokens, row.completion_tokens) == (audio + text_in, output)
    # $2.50 per million text input tokens, $6 per million audio tokens, $10 per million output tokens.
    assert row.cost_micros == math.ceil(text_in * Decimal("2.5") + audio * Decimal(6) + output * Decimal(10))


async def test_transcription_bad_input_budget_and_model(
    tollgate: LiveServer, admin: Admin, engine: AsyncEngine, mock_app: Starlette
) -> None:
    tenant = await admin.tenant(models=["whisper-1"])
    await admin.budget("key", tenant.key_id, "0.0002")  # 2 seconds of whisper-1
    before = len(mock_app.state.requests)
    async with tenant.http(tollgate.url) as http:
        no_file = await http.post("/v1/audio/transcriptions", files={"model": (None, "whisper-1")})
        bad_format = await http.post(
            "/v1/audio/transcriptions", files={"file": WAV}, data={"model": "whisper-1", "response_format": "xml"}
        )
    assert (no_file.status_code, no_file.json()["error"]["param"]) == (400, "file")
    assert (bad_format.status_code, bad_format.json()["error"]["param"]) == (400, "response_format")
    client = tenant.client(tollgate.url)
    with pytest.raises(openai.RateLimitError):  # 2.5 s cannot fit a 2-second budget
        await client.audio.transcriptions.create(model="whisper-1", file=WAV)
    with pytest.raises(openai.NotFoundError):
        await client.audio.transcriptions.create(model="gpt-4o-transcribe", file=WAV)
    assert len(mock_app.state.requests) == before
    assert await usage_rows(engine, tenant.key_id) == []
