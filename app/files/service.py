"""Files, uploaded through Tollgate to upstream and owned by the user who uploaded them.

Files cost nothing upstream, so nothing is metered; every call is still authenticated,
owner-checked and logged. No database connection is held while upstream answers or a body
streams: ownership is read and written in short transactions of their own.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import suppress
from urllib.parse import quote

import aiohttp
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.responses import Response, StreamingResponse

from app.api_keys.schemas import Principal
from app.audit.schemas import ObjectAction
from app.audit.support import Reached, Target, reach_upstream
from app.config import FileSettings, FineTuningSettings
from app.db import DB_ERRORS
from app.errors import GatewayError, InvalidRequest, NotFound, ServiceUnavailable
from app.files.repository import FileRepository
from app.files.schemas import UPLOAD_PURPOSES, UpstreamFile, parse_upstream
from app.fine_tuning.file_check import FINE_TUNE, FineTuneFormCheck, feed, invalid_file, new_validator
from app.fine_tuning.validation import FileProblem, FileStats
from app.gateway.upstream import UPSTREAM_IO_ERRORS, Reply, Upstream
from app.kit.form_relay import FormRelay, FormRules
from app.kit.pagination import PageParams, cursor_anchor
from app.kit.schemas import Deleted
from app.models import File

log = logging.getLogger("tollgate.files")
_DOWNLOAD_CHUNK = 256 * 1024
_FORM_FIELDS = frozenset({"purpose", "expires_after[anchor]", "expires_after[seconds]"})


def file_not_found(file_id: str) -> NotFound:
    return NotFound(f"No such File object: {file_id}", param="id")


def file_path(file_id: str) -> str:
    return f"/files/{quote(file_id, safe='')}"


def _check_field(name: str, value: str) -> None:
    if name == "purpose" and value not in UPLOAD_PURPOSES:
        raise InvalidRequest(
            f"'{value[:64]}' is not one of {sorted(UPLOAD_PURPOSES)} - 'purpose'", param="purpose", code="invalid_value"
        )


async def send_form(
    upstream: Upstream, path: str, relay: FormRelay, chunks: AsyncIterable[bytes], content_length: int | None
) -> Reply:
    """Streams the client's form to upstream through ``relay``. When the relay stopped the body
    (too large, malformed, client gone), that is the error raised, not the broken send."""
    assert relay.content_type is not None
    try:
        return await upstream.send_form(path, relay.relay(chunks), relay.content_type, content_length)
    except GatewayError:
        if relay.error is not None:
            raise relay.error from None
        raise


async def record_file(session: AsyncSession, user_id: str, file: UpstreamFile, stats: FileStats | None = None) -> File:
    """Makes an upstream file the user's; anything that gets a new file from upstream calls this.
    ``stats``: what the fine-tune check counted in it, when it was checked."""
    row = File(
        id=file.id,
        user_id=user_id,
        purpose=file.purpose,
        filename=file.filename[:1024],
        bytes=file.bytes,
        status=file.status,
        upstream_created_at=file.created_at,
        expires_at=file.expires,
        tune_examples=stats.examples if stats else None,
        tune_tokens=stats.tokens if stats else None,
        tune_longest=stats.longest if stats else None,
    )
    return await FileRepository(session).create(row)


async def page(
    session: AsyncSession, owner_id: str, params: PageParams, purpose: str | None
) -> tuple[list[File], bool]:
    """``owner_id``'s files: the caller's own, or the user an admin asked for."""
    repo = FileRepository(session)
    anchor = await cursor_anchor(params, lambda id_: repo.get_owned(id_, owner_id), "file")
    rows, has_more = await repo.page(owner_id, params, anchor, purpose)
    return list(rows), has_more


class FileService:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        upstream: Upstream,
        settings: FileSettings,
        fine_tuning: FineTuningSettings | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.upstream = upstream
        self.fine_tuning = fine_tuning or FineTuningSettings()
        self.rules = FormRules(
            file_field="file",
            fields=_FORM_FIELDS,
            required=frozenset({"file", "purpose"}),
            max_file_bytes=settings.max_upload_bytes,
            check_field=_check_field,
        )

    async def upload(
        self, principal: Principal, content_type: str | None, content_length: int | None, chunks: AsyncIterable[bytes]
    ) -> Response:
        check = FineTuneFormCheck(self.fine_tuning)
        relay = FormRelay(self.rules, content_type, inspector=check)
        reply = await send_form(self.upstream, "/files", relay, chunks, content_length)
        file = parse_upstream(UpstreamFile, reply.content)
        await self.own(principal.user_id, file, check.stats)
        log.info("file %s uploaded: %d bytes, purpose %s", file.id, file.bytes, file.purpose)
        return Response(reply.content, media_type="application/json")

    async def own(self, user_id: str, file: UpstreamFile, stats: FileStats | None = None) -> None:
        """Records the owner of a file upstream has just made. If that fails, the file is deleted
        upstream rather than left there with nobody able to reach or delete it."""
        try:
            async with self.sessionmaker.begin() as session:
                await record_file(session, user_id, file, stats)
        except DB_ERRORS:
            log.exception("could not record the owner of file %s; deleting it upstream", file.id)
            with suppress(GatewayError):
                await self.upstream.request("DELETE", file_path(file.id))
            raise ServiceUnavailable("Tollgate could not record the file, so it was not kept; retry later.") from None

    async def check_stored(self, file: UpstreamFile) -> FileStats | None:
        """The fine-tune check of a file upstream already holds (a completed Upload), read back
        chunk by chunk. A file that fails it is deleted upstream and refused with the reason."""
        if file.purpose != FINE_TUNE:
            return None
        validator = new_validator(self.fine_tuning)
        response = await self.upstream.download(file_path(file.id) + "/content")
        try:
            async for chunk in response.content.iter_chunked(_DOWNLOAD_CHUNK):
                if await feed(validator, chunk) is not None:
                    break
        except UPSTREAM_IO_ERRORS:
            raise ServiceUnavailable("Tollgate could not read the file back to check it; retry later.") from None
        finally:
            response.close()
        result = validator.finish()
        if isinstance(result, FileProblem):
            with suppress(GatewayError):
                await self.upstream.request("DELETE", file_path(file.id))
            log.info("file %s refused for fine-tuning: %s", file.id, result.check)
            raise invalid_file(result)
        return result

    async def owned(self, principal: Principal, file_id: str, action: ObjectAction = "object.read") -> Reached[File]:
        """The caller's file; for an admin any file, even one made upstream outside Tollgate."""
        async with self.sessionmaker.begin() as session:
            repo = FileRepository(session)
            found = await reach_upstream(
                session, principal, Target("file", file_id), lambda owner: repo.get_owned(file_id, owner), action
            )
        if found is None:
            raise file_not_found(file_id)
        return found

    async def retrieve(self, principal: Principal, file_id: str) -> Response:
        row = await self.owned(principal, file_id)
        reply = await self.upstream.request("GET", file_path(row.id))
        return Response(reply.content, media_type="application/json")

    async def content(self, principal: Principal, file_id: str) -> StreamingResponse:
        row = await self.owned(principal, file_id)
        response = await self.upstream.download(file_path(row.id) + "/content")
        length = response.headers.get("content-length", "")
        return StreamingResponse(
            _relay_body(response),
            media_type=response.headers.get("content-type", "application/octet-stream"),
            headers={"content-length": length} if length.isdigit() else None,
        )

    async def delete(self, principal: Principal, file_id: str) -> Response:
        row = await self.owned(principal, file_id, "object.deleted")
        try:
            content = (await self.upstream.request("DELETE", file_path(row.id))).content
        except NotFound:
            # Already gone upstream (expired, say): the ownership row is all that is left of it.
            content = Deleted(id=row.id, object="file").model_dump_json().encode()
        async with self.sessionmaker.begin() as session:
            await FileRepository(session).remove(row.id)
        log.info("file %s deleted", row.id)
        return Response(content, media_type="application/json")


async def _relay_body(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """Upstream's body, chunk by chunk as the client takes it. A failure mid-body is raised, which
    breaks the client's connection: a short body must not pass for a complete one."""
    try:
        async for chunk in response.content.iter_chunked(_DOWNLOAD_CHUNK):
            yield chunk
    except UPSTREAM_IO_ERRORS:
        log.warning("upstream broke off a file download")
        raise
    finally:
        response.close()
