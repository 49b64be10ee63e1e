"""Speech (text in, audio bytes out) and transcriptions/translations (audio upload in, text out).

Speech: tts-1 and tts-1-hd are priced per input character, known before the call, so the
reservation is the cost. gpt-4o-mini-tts is priced per token: input text tokens plus output
audio tokens; upstream reports them only in the ``sse`` stream format, so for raw audio the
output is estimated from the input (``AUDIO_TOKENS_PER_CHAR`` / speed) and marked estimated.

Transcriptions: whisper-1 is priced per second of audio. The duration billed is upstream's:
the ``usage.seconds`` of a json answer, the ``duration`` of verbose_json, or the end of the last
cue of srt/vtt; a text answer says nothing, so the estimate made before the call is billed
(marked estimated). That estimate, also the reservation, is exact for WAV (from its header)
and otherwise the upload's size at ``MIN_AUDIO_BYTES_PER_SECOND`` (a 32 kbit/s floor, below
what speech is usually encoded at). gpt-4o-transcribe models are billed from their token
usage block, or at the reservation when none came.
"""

from __future__ import annotations

import math
import re
import struct
from decimal import Decimal
from typing import Any

from starlette.responses import Response

from app.errors import InvalidRequest
from app.gateway.service import CallContext
from app.gateway.streaming import RelayResult, SSERelay
from app.kit.spooled_form import Upload, UploadedFile
from app.kit.tokens import count_text
from app.media.relay import ByteRelay
from app.media.schemas import AudioUpload, SpeechRequest, parse_audio_upload, parse_speech
from app.media.service import Billed, MediaCalls, parse_json
from app.models.usage_record import UNIT_CHARACTER, UNIT_SECOND
from app.usage.pricing import TokenUsage

# gpt-4o-mini-tts: about 21 audio tokens per second of speech (OpenAI's $0.015/min at $12/M)
# and about 15 characters per second at speed 1.0.
AUDIO_TOKENS_PER_CHAR = Decimal("1.4")
MIN_AUDIO_BYTES_PER_SECOND = 4_000
# gpt-4o-transcribe bounds per second of audio: input audio tokens, output text tokens.
AUDIO_INPUT_TOKENS_PER_SECOND = 20
TRANSCRIPT_TOKENS_PER_SECOND = 8
_CUE_END = re.compile(rb"--> (\d+):(\d{2}):(\d{2})[.,](\d{3})")


class AudioCalls(MediaCalls):
    async def speech(self, ctx: CallContext, raw: bytes, body: dict[str, Any]) -> Response:
        req = parse_speech(body)
        self.authorize(ctx.principal, req.model)
        quote = self._speech_quote(req)
        ctx, admission = await self.admit(ctx, req.model, quote.cost, quote.tokens.prompt)
        response = await self.gateway.send(
            ctx, admission, self.gateway.upstream.open_bytes("/audio/speech", raw, model=req.model)
        )
        if req.stream_format == "sse":

            async def finish_events(result: RelayResult) -> None:
                await self.settle(ctx, admission, self._speech_usage(req, quote, result.usage), result.outcome)

            return SSERelay(response, keep_usage_event=True, headers=admission.headers, on_finish=finish_events)

        async def finish(outcome: str, _relayed: int) -> None:
            # Upstream bills the whole input once it accepted the call, whoever stops reading.
            await self.settle(ctx, admission, quote, outcome)

        return ByteRelay(response, headers=admission.headers, on_finish=finish)

    def _speech_quote(self, req: SpeechRequest) -> Billed:
        if self.prices.rate(req.model, "input_mchars"):
            chars = len(req.input)
            cost = self.prices.cost(req.model, input_characters=chars)
            return Billed(cost, units=(UNIT_CHARACTER, chars), estimated=False)
        prompt = count_text(req.model, req.input) + count_text(req.model, req.instructions)
        output = math.ceil(len(req.input) * AUDIO_TOKENS_PER_CHAR / Decimal(str(req.speed)))
        cost = self.prices.cost(req.model, input_tokens=prompt, output_tokens=output)
        return Billed(cost, TokenUsage(prompt=prompt, completion=output), estimated=True)

    def _speech_usage(self, req: SpeechRequest, quote: Billed, usage: dict[str, Any] | None) -> Billed:
        if quote.units is not None or usage is None:
            return quote
        prompt, output = int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)
        cost = self.prices.cost(req.model, input_tokens=prompt, output_tokens=output)
        return Billed(cost, TokenUsage(prompt=prompt, completion=output), estimated=False)

    async def transcribe(self, ctx: CallContext, upload: Upload, path: str) -> Response:
        """Transcriptions (``path`` /audio/transcriptions) and translations (/audio/translations)."""
        audio = next((f for f in upload.files if f.field == "file"), None)
        if audio is None or audio.size == 0:
            raise InvalidRequest("An audio file is required.", param="file", code="missing_required_parameter")
        req = parse_audio_upload(upload.fields)
        self.authorize(ctx.principal, req.model)
        seconds = estimate_seconds(audio)
        quote = self._transcription_quote(req, seconds)
        ctx, admission = await self.admit(ctx, req.model, quote.cost, quote.tokens.prompt)
        call = self.gateway.upstream.upload(path, upload.chunks(), upload.content_type, upload.size, model=req.model)
        reply = await self.gateway.send(ctx, admission, call)
        parsed = parse_json(reply.content) if req.response_format.endswith("json") else {}
        if parsed is None:
            raise await self.malformed(ctx, admission, reply, quote.cost)
        billed = self._transcription_usage(req, quote, parsed, reply.content)
        return await self.settle_reply(ctx, admission, reply, billed)

    def _by_duration(self, model: str) -> bool:
        return bool(self.prices.rate(model, "audio_hours") or self.prices.rate(model, "input_audio_hours"))

    def _duration_bill(self, model: str, seconds: Decimal, *, estimated: bool) -> Billed:
        cost = self.prices.cost(model, audio_seconds=seconds)
        return Billed(cost, units=(UNIT_SECOND, math.ceil(seconds)), estimated=estimated)

    def _transcription_quote(self, req: AudioUpload, seconds: Decimal) -> Billed:
        if self._by_duration(req.model):
            return self._duration_bill(req.model, seconds, estimated=True)
        prompt = count_text(req.model, req.prompt)
        audio = math.ceil(seconds * AUDIO_INPUT_TOKENS_PER_SECOND)
        output = math.ceil(seconds * TRANSCRIPT_TOKENS_PER_SECOND) + 16
        cost = self.prices.cost(req.model, input_tokens=prompt + audio, input_audio_tokens=audio, output_tokens=output)
        return Billed(cost, TokenUsage(prompt=prompt + audio, completion=output), estimated=True)

    def _transcription_usage(self, req: AudioUpload, quote: Billed, parsed: dict[str, Any], content: bytes) -> Billed:
        usage = parsed.get("usage")
        usage = usage if isinstance(usage, dict) else {}
        if self._by_duration(req.model):
            seconds = _number(usage.get("seconds")) or _number(parsed.get("duration"))
            if seconds is None and req.response_format in ("srt", "vtt"):
                seconds = subtitle_end(content)
            if seconds is None:
                return quote
            return self._duration_bill(req.model, seconds, estimated=False)
        if usage.get("type") != "tokens":
            return quote
        details = usage.get("input_token_details") or {}
        prompt, output = int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)
        audio = int(details.get("audio_tokens") or 0) if isinstance(details, dict) else 0
        cost = self.prices.cost(req.model, input_tokens=prompt, input_audio_tokens=audio, output_tokens=output)
        return Billed(cost, TokenUsage(prompt=prompt, completion=output), estimated=False)


def estimate_seconds(audio: UploadedFile) -> Decimal:
    """Exact for PCM WAV (data size over byte rate, from the header); otherwise the upload's
    size at a low bitrate floor, an upper bound for ordinary speech recordings."""
    head = audio.head
    if len(head) >= 44 and head[:4] == b"RIFF" and head[8:12] == b"WAVE" and head[12:16] == b"fmt ":
        byte_rate = struct.unpack_from("<I", head, 28)[0]
        if byte_rate > 0:
            return Decimal(max(audio.size - 44, 0)) / Decimal(byte_rate)
    return Decimal(audio.size) / Decimal(MIN_AUDIO_BYTES_PER_SECOND)


def subtitle_end(content: bytes) -> Decimal | None:
    """The end of the last cue of an srt or vtt transcript, in seconds."""
    ends = _CUE_END.findall(content)
    if not ends:
        return None
    hours, minutes, seconds, millis = (int(v) for v in ends[-1])
    return Decimal(hours * 3600 + minutes * 60 + seconds) + Decimal(millis) / 1000


def _number(value: object) -> Decimal | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return Decimal(str(value))
    return None
