"""``/v1/uploads``: OpenAI's Uploads API (a large file in parts), owned by the user who began it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from app.api_keys.dependencies import CurrentPrincipal
from app.files.dependencies import declared_length
from app.uploads.schemas import UploadComplete, UploadCreate
from app.uploads.service import UploadService

router = APIRouter(prefix="/v1/uploads", tags=["uploads"])

_PART_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["data"],
                    "properties": {"data": {"type": "string", "format": "binary"}},
                }
            }
        },
    }
}


async def get_uploads(request: Request) -> UploadService:
    uploads: UploadService = request.app.state.uploads
    return uploads


UploadsDep = Annotated[UploadService, Depends(get_uploads)]


@router.post("")
async def create_upload(
    data: UploadCreate, request: Request, principal: CurrentPrincipal, uploads: UploadsDep
) -> Response:
    """Checked here, forwarded as the client sent it."""
    return await uploads.create(principal, await request.body())


@router.post("/{upload_id}/parts", openapi_extra=_PART_DOC)
async def add_upload_part(
    upload_id: str, request: Request, principal: CurrentPrincipal, uploads: UploadsDep
) -> Response:
    content_type = request.headers.get("content-type")
    return await uploads.add_part(principal, upload_id, content_type, declared_length(request), request.stream())


@router.post("/{upload_id}/complete")
async def complete_upload(
    upload_id: str, data: UploadComplete, request: Request, principal: CurrentPrincipal, uploads: UploadsDep
) -> Response:
    return await uploads.complete(principal, upload_id, await request.body())


@router.post("/{upload_id}/cancel")
async def cancel_upload(upload_id: str, principal: CurrentPrincipal, uploads: UploadsDep) -> Response:
    return await uploads.cancel(principal, upload_id)
