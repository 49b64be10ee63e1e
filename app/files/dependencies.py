from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from app.files.service import FileService
from app.kit.pagination import PageParams


async def get_files(request: Request) -> FileService:
    files: FileService = request.app.state.files
    return files


def declared_length(request: Request) -> int | None:
    """The body's Content-Length, when the client sent one (chunked bodies have none)."""
    value = request.headers.get("content-length", "")
    return int(value) if value.isdigit() else None


async def file_page(
    limit: Annotated[int, Query(ge=1, le=10_000)] = 10_000,
    order: Annotated[str, Query(pattern="^(asc|desc)$")] = "desc",
    after: str | None = None,
) -> PageParams:
    """OpenAI's file list pages by ``after`` only, up to 10,000 files a page (its default)."""
    return PageParams(limit=limit, order="asc" if order == "asc" else "desc", after=after)


FilesDep = Annotated[FileService, Depends(get_files)]
FilePage = Annotated[PageParams, Depends(file_page)]
