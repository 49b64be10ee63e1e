"""``/v1/files``: uploads streamed through to upstream, owned by the uploader, never metered."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from starlette.responses import Response

from app.api_keys.dependencies import CurrentPrincipal
from app.audit.dependencies import listed_owner
from app.db import SessionDep
from app.files import service
from app.files.dependencies import FilePage, FilesDep, declared_length
from app.files.schemas import FileObject
from app.kit.pagination import CursorPage, cursor_page

router = APIRouter(prefix="/v1/files", tags=["files"])

_FORM_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "purpose"],
                    "properties": {"file": {"type": "string", "format": "binary"}, "purpose": {"type": "string"}},
                }
            }
        },
    }
}


@router.post("", openapi_extra=_FORM_DOC)
async def upload_file(request: Request, principal: CurrentPrincipal, files: FilesDep) -> Response:
    """The body is read as it arrives and relayed, never parsed into memory or spooled."""
    content_type = request.headers.get("content-type")
    return await files.upload(principal, content_type, declared_length(request), request.stream())


@router.get("", response_model=CursorPage[FileObject])
async def list_files(
    owner: Annotated[str, listed_owner("file")], session: SessionDep, page: FilePage, purpose: str | None = None
) -> CursorPage[FileObject]:
    rows, has_more = await service.page(session, owner, page, purpose)
    return cursor_page([FileObject.of(r) for r in rows], has_more)


@router.get("/{file_id}")
async def retrieve_file(file_id: str, principal: CurrentPrincipal, files: FilesDep) -> Response:
    return await files.retrieve(principal, file_id)


@router.get("/{file_id}/content")
async def download_file(file_id: str, principal: CurrentPrincipal, files: FilesDep) -> Response:
    return await files.content(principal, file_id)


@router.delete("/{file_id}")
async def delete_file(file_id: str, principal: CurrentPrincipal, files: FilesDep) -> Response:
    return await files.delete(principal, file_id)
