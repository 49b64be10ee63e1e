"""Uploads: a large file sent to upstream in parts, owned by the user who began it, and the file
it becomes owned by that user too. Not metered (upstream does not bill for storage calls).

Like files, ownership is read and written in short transactions, none held across a call.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable
from contextlib import suppress
from urllib.parse import quote

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.responses import Response

from app.api_keys.schemas import Principal
from app.audit.support import Reached, Target, reach_upstream
from app.config import FileSettings
from app.db import DB_ERRORS
from app.errors import GatewayError, InvalidRequest, NotFound, ServiceUnavailable
from app.files.schemas import parse_upstream
from app.files.service import FileService, send_form
from app.gateway.upstream import Upstream
from app.kit.form_relay import FormRelay, FormRules
from app.models import Upload
from app.uploads.repository import UploadRepository
from app.uploads.schemas import UpstreamUpload

log = logging.getLogger("tollgate.uploads")


def upload_not_found(upload_id: str) -> NotFound:
    return NotFound(f"No such Upload: {upload_id}", param="upload_id")


def _path(upload_id: str) -> str:
    return f"/uploads/{quote(upload_id, safe='')}"


def _json(content: bytes) -> Response:
    return Response(content, media_type="application/json")


class UploadService:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        upstream: Upstream,
        files: FileService,
        settings: FileSettings,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.upstream = upstream
        self.files = files
        self.part_rules = FormRules(
            file_field="data", fields=frozenset(), required=frozenset({"data"}), max_file_bytes=settings.max_part_bytes
        )

    async def create(self, principal: Principal, raw: bytes) -> Response:
        reply = await self.upstream.request("POST", "/uploads", raw)
        upload = parse_upstream(UpstreamUpload, reply.content)
        row = Upload(
            id=upload.id,
            user_id=principal.user_id,
            filename=upload.filename[:1024],
            purpose=upload.purpose,
            bytes=upload.bytes,
            status=upload.status,
        )
        try:
            async with self.sessionmaker.begin() as session:
                await UploadRepository(session).create(row)
        except DB_ERRORS:
            log.exception("could not record the owner of upload %s; cancelling it upstream", upload.id)
            with suppress(GatewayError):
                await self.upstream.request("POST", _path(upload.id) + "/cancel")
            raise ServiceUnavailable("Tollgate could not record the upload; retry later.") from None
        log.info("upload %s begun: %d bytes, purpose %s", upload.id, upload.bytes, upload.purpose)
        return _json(reply.content)

    async def owned(self, principal: Principal, upload_id: str) -> Reached[Upload]:
        """Every upload route changes the upload, so an admin's support access is ``object.updated``."""
        async with self.sessionmaker.begin() as session:
            repo = UploadRepository(session)
            found = await reach_upstream(
                session,
                principal,
                Target("upload", upload_id),
                lambda owner: repo.get_owned(upload_id, owner),
                "object.updated",
            )
        if found is None:
            raise upload_not_found(upload_id)
        return found

    async def add_part(
        self,
        principal: Principal,
        upload_id: str,
        content_type: str | None,
        content_length: int | None,
        chunks: AsyncIterable[bytes],
    ) -> Response:
        row = await self.owned(principal, upload_id)
        relay = FormRelay(self.part_rules, content_type)
        reply = await send_form(self.upstream, _path(row.id) + "/parts", relay, chunks, content_length)
        return _json(reply.content)

    async def complete(self, principal: Principal, upload_id: str, raw: bytes) -> Response:
        row = await self.owned(principal, upload_id)
        reply = await self.upstream.request("POST", _path(row.id) + "/complete", raw)
        upload = parse_upstream(UpstreamUpload, reply.content)
        if upload.file is not None:
            # A fine-tune file is checked before anyone owns it; a bad one is deleted upstream.
            try:
                stats = await self.files.check_stored(upload.file)
            except InvalidRequest:
                await self._set_status(upload.model_copy(update={"file": None}))
                raise
            # The upload's owner's, also when an admin completed it for them (the admin's own when
            # the upload was made outside Tollgate and nobody is known to own it).
            await self.files.own(row.owner_id or principal.user_id, upload.file, stats)
        await self._set_status(upload)
        log.info("upload %s completed as file %s", upload.id, upload.file.id if upload.file else None)
        return _json(reply.content)

    async def cancel(self, principal: Principal, upload_id: str) -> Response:
        row = await self.owned(principal, upload_id)
        reply = await self.upstream.request("POST", _path(row.id) + "/cancel")
        await self._set_status(parse_upstream(UpstreamUpload, reply.content))
        return _json(reply.content)

    async def _set_status(self, upload: UpstreamUpload) -> None:
        async with self.sessionmaker.begin() as session:
            await UploadRepository(session).set_status(
                upload.id, upload.status, upload.file.id if upload.file else None
            )
