"""OpenAI's image and audio routes. Thin: the caller, the body, one service call."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from starlette.responses import Response

from app.api_keys.dependencies import get_principal
from app.gateway.dependencies import read_json_object
from app.gateway.service import CallContext
from app.kit.spooled_form import read_upload
from app.media.audio import AudioCalls
from app.media.images import ImageCalls

router = APIRouter(prefix="/v1", tags=["openai"])

_JSON_DOC = {"requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}}
_FORM_DOC = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {"type": "object"}}}}}
# Routes whose bodies are multipart uploads, allowed up to TOLLGATE_MAX_UPLOAD_BYTES.
UPLOAD_PATHS = frozenset(
    {"/v1/images/edits", "/v1/images/variations", "/v1/audio/transcriptions", "/v1/audio/translations"}
)


async def _context(request: Request, endpoint: str) -> CallContext:
    # Authenticated before a byte of the body is read: nobody spools an upload unauthenticated.
    principal = await get_principal(request)
    state = request.scope.get("state", {})
    return CallContext(
        principal=principal,
        request_id=state.get("request_id") or "",
        started=state.get("started") or time.perf_counter(),
        endpoint=endpoint,
    )


async def _upload_call(request: Request, endpoint: str, path: str, *, audio: bool) -> Response:
    context = await _context(request, endpoint)
    upload = await read_upload(request, request.app.state.settings.gateway.max_upload_bytes)
    try:
        if audio:
            calls: AudioCalls = request.app.state.audio
            return await calls.transcribe(context, upload, path)
        images: ImageCalls = request.app.state.images
        return await images.upload(context, upload, path)
    finally:
        upload.close()


@router.post("/images/generations", openapi_extra=_JSON_DOC)
async def generate_images(request: Request) -> Response:
    context = await _context(request, "images.generations")
    raw, body = await read_json_object(request)
    calls: ImageCalls = request.app.state.images
    return await calls.generate(context, raw, body)


@router.post("/images/edits", openapi_extra=_FORM_DOC)
async def edit_images(request: Request) -> Response:
    return await _upload_call(request, "images.edits", "/images/edits", audio=False)


@router.post("/images/variations", openapi_extra=_FORM_DOC)
async def image_variations(request: Request) -> Response:
    return await _upload_call(request, "images.variations", "/images/variations", audio=False)


@router.post("/audio/speech", openapi_extra=_JSON_DOC)
async def speech(request: Request) -> Response:
    context = await _context(request, "audio.speech")
    raw, body = await read_json_object(request)
    calls: AudioCalls = request.app.state.audio
    return await calls.speech(context, raw, body)


@router.post("/audio/transcriptions", openapi_extra=_FORM_DOC)
async def transcriptions(request: Request) -> Response:
    return await _upload_call(request, "audio.transcriptions", "/audio/transcriptions", audio=True)


@router.post("/audio/translations", openapi_extra=_FORM_DOC)
async def translations(request: Request) -> Response:
    return await _upload_call(request, "audio.translations", "/audio/translations", audio=True)
