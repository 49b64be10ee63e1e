"""Images and audio for the mock upstream: fake PNGs and audio bytes, OpenAI-shaped answers.

Multipart routes take their controls from an optional ``mock`` form field holding the same JSON
object as the ``mock`` body field of JSON routes (only ``no_usage`` and ``malformed`` apply).
"""

from __future__ import annotations

import base64
import json
import math
import struct
import time
import zlib
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse

from app.mock_upstream.chat import count_tokens
from app.mock_upstream.prelude import MockControls, error_body, json_response

IMAGE_OUTPUT_TOKENS = {"low": 272, "medium": 1056, "high": 4160}  # per 1024x1024 image
INPUT_IMAGE_TOKENS = 194  # what the mock charges a GPT image model per uploaded image
AUDIO_BYTES_PER_CHAR = 120  # fake speech: bytes of audio per input character
SPEECH_TOKENS_PER_CHAR = 2  # gpt-4o-mini-tts output tokens per input character (sse usage)
NON_WAV_BYTES_PER_SECOND = 16_000  # how long the mock says a non-WAV upload is
AUDIO_TYPES = {"mp3": "audio/mpeg", "opus": "audio/opus", "aac": "audio/aac", "flac": "audio/flac",
               "wav": "audio/wav", "pcm": "audio/pcm"}  # fmt: skip


def _png() -> bytes:
    """A valid 1x1 PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0\0\0\0")) + chunk(b"IEND", b"")
    )


FAKE_PNG_B64 = base64.b64encode(_png()).decode()


def _bad(message: str, param: str | None) -> Response:
    return json_response(error_body(message, "invalid_request_error", param=param), 400)


def _gpt_image(model: str) -> bool:
    return model.startswith("gpt-image")


def images_payload(fields: dict[str, Any], controls: MockControls, input_images: int = 0) -> Response:
    model = fields.get("model") or "dall-e-2"
    n = int(fields.get("n") or 1)
    if model == "dall-e-3" and n != 1:
        return _bad("You must provide n=1 for this model.", "n")
    stamp = int(time.time())
    size = fields.get("size") or "1024x1024"
    size = "1024x1024" if size == "auto" else size
    payload: dict[str, Any] = {"created": stamp}
    if _gpt_image(model):
        quality = fields.get("quality") or "auto"
        quality = "medium" if quality == "auto" else quality
        prompt = count_tokens(str(fields.get("prompt") or ""))
        image_in = input_images * INPUT_IMAGE_TOKENS
        output = n * IMAGE_OUTPUT_TOKENS.get(quality, IMAGE_OUTPUT_TOKENS["high"])
        payload["data"] = [{"b64_json": FAKE_PNG_B64} for _ in range(n)]
        payload.update(background="opaque", output_format="png", quality=quality, size=size)
        if not controls.no_usage:
            payload["usage"] = {
                "input_tokens": prompt + image_in,
                "output_tokens": output,
                "total_tokens": prompt + image_in + output,
                "input_tokens_details": {"text_tokens": prompt, "image_tokens": image_in},
            }
    else:
        b64 = fields.get("response_format") == "b64_json"
        item: dict[str, Any] = {"b64_json": FAKE_PNG_B64} if b64 else {"url": f"https://mock.invalid/img/{stamp}.png"}
        if model == "dall-e-3":
            item["revised_prompt"] = f"A detailed rendering of: {fields.get('prompt')}"
        payload["data"] = [dict(item) for _ in range(n)]
    return _maybe_malformed(payload, controls)


def _maybe_malformed(payload: dict[str, Any], controls: MockControls) -> Response:
    if controls.malformed:
        text = json.dumps(payload)
        return Response(text[: len(text) // 2], media_type="application/json")
    return json_response(payload)


async def image_generations(request: Request) -> Response:
    body = request.state.mock_body
    if not isinstance(body, dict) or not isinstance(body.get("prompt"), str) or not body["prompt"]:
        return _bad("Missing required parameter: 'prompt'.", "prompt")
    return images_payload(body, request.state.mock_controls)


async def image_uploads(request: Request) -> Response:
    async with request.form() as form:
        files = [v for k, v in form.multi_items() if k in ("image", "image[]") and isinstance(v, UploadFile)]
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
    if not files:
        return _bad("Missing required parameter: 'image'.", "image")
    if request.url.path.endswith("/edits") and not fields.get("prompt"):
        return _bad("Missing required parameter: 'prompt'.", "prompt")
    return images_payload(fields, _form_controls(fields), input_images=len(files))


async def speech(request: Request) -> Response:
    body = request.state.mock_body
    if not isinstance(body, dict) or not isinstance(body.get("input"), str) or not body["input"]:
        return _bad("Missing required parameter: 'input'.", "input")
    text = body["input"]
    audio = bytes(i % 251 for i in range(len(text) * AUDIO_BYTES_PER_CHAR))
    if body.get("stream_format") == "sse":
        return StreamingResponse(_speech_events(audio, text, body), media_type="text/event-stream")
    media_type = AUDIO_TYPES.get(str(body.get("response_format") or "mp3"), "audio/mpeg")
    return StreamingResponse(_pieces(audio), media_type=media_type)


async def _pieces(audio: bytes) -> Any:
    for start in range(0, len(audio), 4096):
        yield audio[start : start + 4096]


async def _speech_events(audio: bytes, text: str, body: dict[str, Any]) -> Any:
    for start in range(0, len(audio), 4096):
        delta = {"type": "speech.audio.delta", "audio": base64.b64encode(audio[start : start + 4096]).decode()}
        yield b"data: " + json.dumps(delta).encode() + b"\n\n"
    prompt = count_tokens(text) + count_tokens(str(body.get("instructions") or ""))
    output = len(text) * SPEECH_TOKENS_PER_CHAR
    usage = {"input_tokens": prompt, "output_tokens": output, "total_tokens": prompt + output}
    yield b"data: " + json.dumps({"type": "speech.audio.done", "usage": usage}).encode() + b"\n\n"


def audio_seconds(content: bytes) -> float:
    """A WAV's duration from its header; anything else at a fixed bitrate."""
    if len(content) >= 44 and content[:4] == b"RIFF" and content[8:12] == b"WAVE":
        byte_rate = struct.unpack_from("<I", content, 28)[0]
        return round((len(content) - 44) / byte_rate, 3) if byte_rate else 0.0
    return round(len(content) / NON_WAV_BYTES_PER_SECOND, 3)


async def transcriptions(request: Request) -> Response:
    async with request.form() as form:
        upload = form.get("file")
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        content = await upload.read() if isinstance(upload, UploadFile) else b""
    if not content:
        return _bad("Missing required parameter: 'file'.", "file")
    model = fields.get("model", "")
    seconds = audio_seconds(content)
    text = "This is a deterministic mock transcript."
    controls = _form_controls(fields)
    response_format = fields.get("response_format") or "json"
    if response_format == "text":
        return PlainTextResponse(text + "\n")
    if response_format in ("srt", "vtt"):
        return PlainTextResponse(_subtitles(text, seconds, response_format))
    payload: dict[str, Any] = {"text": text}
    if response_format == "verbose_json":
        task = "translate" if request.url.path.endswith("/translations") else "transcribe"
        segment = {"id": 0, "seek": 0, "start": 0.0, "end": seconds, "text": text, "tokens": [1, 2],
                   "temperature": 0.0, "avg_logprob": -0.2, "no_speech_prob": 0.01}  # fmt: skip
        payload = {"task": task, "language": "english", "duration": seconds, "text": text, "segments": [segment]}
    if not controls.no_usage:
        if model.startswith("whisper"):
            payload["usage"] = {"type": "duration", "seconds": math.ceil(seconds)}
        else:
            audio_tokens = math.ceil(seconds * 10)
            prompt = count_tokens(fields.get("prompt") or "")
            output = count_tokens(text)
            payload["usage"] = {
                "type": "tokens",
                "input_tokens": audio_tokens + prompt,
                "input_token_details": {"text_tokens": prompt, "audio_tokens": audio_tokens},
                "output_tokens": output,
                "total_tokens": audio_tokens + prompt + output,
            }
    return _maybe_malformed(payload, controls)


def _subtitles(text: str, seconds: float, kind: str) -> str:
    millis = round(seconds * 1000)
    end = f"{millis // 3600000:02d}:{millis // 60000 % 60:02d}:{millis // 1000 % 60:02d}"
    if kind == "srt":
        return f"1\n00:00:00,000 --> {end},{millis % 1000:03d}\n{text}\n\n"
    return f"WEBVTT\n\n00:00:00.000 --> {end}.{millis % 1000:03d}\n{text}\n\n"


def _form_controls(fields: dict[str, str]) -> MockControls:
    try:
        raw = json.loads(fields.get("mock") or "null")
    except ValueError:
        raw = None
    return MockControls.from_body({"mock": raw}) if isinstance(raw, dict) else MockControls()
