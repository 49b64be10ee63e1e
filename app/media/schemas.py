"""What Tollgate needs to know of a media request, validated before anything is reserved.

JSON bodies are forwarded as sent; multipart bodies as uploaded. These are views onto the
fields that decide the price, not models that rebuild the request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.errors import InvalidRequest

SPEECH_MAX_INPUT_CHARS = 4096
_IMAGE_DEFAULTS = {"dall-e-2": "1024x1024", "dall-e-3": "1024x1024"}


@dataclass(frozen=True, slots=True)
class ImageRequest:
    model: str
    prompt: str
    n: int
    size: str
    quality: str


@dataclass(frozen=True, slots=True)
class SpeechRequest:
    model: str
    input: str
    instructions: str
    speed: float
    stream_format: str


@dataclass(frozen=True, slots=True)
class AudioUpload:
    model: str
    prompt: str
    response_format: str


def _invalid(message: str, param: str, code: str = "invalid_value") -> InvalidRequest:
    return InvalidRequest(message, param=param, code=code)


def _model(fields: Mapping[str, Any], default: str | None = None) -> str:
    model = fields.get("model", default)
    if model is None:
        raise _invalid("you must provide a model parameter", "model", "missing_required_parameter")
    if not isinstance(model, str) or not model.strip():
        raise _invalid("'model' must be a non-empty string.", "model", "invalid_type")
    return model


def _text(fields: Mapping[str, Any], name: str, *, required: bool = False) -> str:
    value = fields.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise _invalid(f"'{name}' must be a non-empty string.", name, "invalid_type")
    return value


def _count(fields: Mapping[str, Any], name: str, low: int, high: int) -> int:
    """An integer field; multipart fields arrive as text and are read the same way."""
    value = fields.get(name, 1)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise _invalid(f"'{name}' must be an integer from {low} to {high}.", name)
    return value


def parse_image(fields: Mapping[str, Any], *, needs_prompt: bool = True) -> ImageRequest:
    """Generations (JSON) and edits/variations (multipart fields). Streamed image generation
    is not served: its partial images would need their own metering."""
    model = _model(fields, "dall-e-2")
    prompt = _text(fields, "prompt", required=needs_prompt)
    if fields.get("stream") in (True, "true"):
        raise _invalid("Streamed image generation is not served by this gateway.", "stream")
    n = _count(fields, "n", 1, 1 if model == "dall-e-3" else 10)
    size = fields.get("size") or _IMAGE_DEFAULTS.get(model, "auto")
    quality = fields.get("quality") or "auto"
    if not isinstance(size, str):
        raise _invalid("'size' must be a string.", "size", "invalid_type")
    if not isinstance(quality, str):
        raise _invalid("'quality' must be a string.", "quality", "invalid_type")
    return ImageRequest(model, prompt, n, size, quality)


def parse_speech(body: Mapping[str, Any]) -> SpeechRequest:
    model = _model(body)
    text = _text(body, "input", required=True)
    if len(text) > SPEECH_MAX_INPUT_CHARS:
        raise _invalid(f"'input' must be at most {SPEECH_MAX_INPUT_CHARS} characters.", "input")
    if not isinstance(body.get("voice"), (str, dict)):
        raise _invalid("'voice' is required.", "voice", "missing_required_parameter")
    speed = body.get("speed", 1.0)
    if not isinstance(speed, (int, float)) or isinstance(speed, bool) or not 0.25 <= speed <= 4.0:
        raise _invalid("'speed' must be a number from 0.25 to 4.0.", "speed")
    stream_format = body.get("stream_format") or "audio"
    if stream_format not in ("audio", "sse"):
        raise _invalid("'stream_format' must be 'audio' or 'sse'.", "stream_format")
    return SpeechRequest(model, text, _text(body, "instructions"), float(speed), stream_format)


def parse_audio_upload(fields: Mapping[str, Any]) -> AudioUpload:
    model = _model(fields)
    response_format = fields.get("response_format") or "json"
    if response_format not in ("json", "text", "srt", "verbose_json", "vtt", "diarized_json"):
        raise _invalid("'response_format' is not one of json, text, srt, verbose_json, vtt.", "response_format")
    if fields.get("stream") in (True, "true"):
        raise _invalid("Streamed transcription is not served by this gateway.", "stream")
    return AudioUpload(model, _text(fields, "prompt"), response_format)
