"""Vector stores through Tollgate: owned by the user who created them, every route owner-checked.

Stores live upstream. Tollgate keeps each one's owner, the key and team its storage is billed
to, and its last-seen object (what the caller's list shows). A store's files and file batches
are upstream's to list, relayed only once the store is known to be the caller's; upstream
itself refuses a file or batch id that is not in that store. Every file id a request names must
be the caller's own file, checked before anything is sent. No DB session is held across an
upstream call.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from contextlib import suppress
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.responses import Response

from app.api_keys.schemas import Principal
from app.audit.schemas import ObjectAction
from app.audit.support import Target, reach_upstream
from app.db import DB_ERRORS
from app.errors import GatewayError, NotFound, ServiceUnavailable
from app.files.repository import FileRepository
from app.files.service import file_not_found
from app.gateway.upstream import Reply, Upstream, forward_query, path_id
from app.kit.pagination import PageParams, cursor_anchor
from app.kit.schemas import Deleted
from app.models import VectorStore
from app.vector_stores.repository import VectorStoreRepository
from app.vector_stores.schemas import MAX_BATCH_FILES, file_ids_of, list_of, upstream_object, usage_bytes_of

log = logging.getLogger("tollgate.vector_stores")

_LIST_FILES_QUERY = frozenset({"limit", "order", "after", "before", "filter"})


def store_not_found(store_id: str) -> NotFound:
    return NotFound(f"No vector store found with id '{store_id}'.", param="vector_store_id")


def relay(reply: Reply) -> Response:
    return Response(reply.content, media_type="application/json")


class VectorStores:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], upstream: Upstream) -> None:
        self.sessionmaker = sessionmaker
        self.upstream = upstream

    async def check_files(self, user_id: str, file_ids: list[str]) -> None:
        """404 for the first file id that is not ``user_id``'s, exactly like an unknown one."""
        if not file_ids:
            return
        async with self.sessionmaker() as session:
            owned = await FileRepository(session).owned_ids(file_ids, user_id)
        for file_id in file_ids:
            if file_id not in owned:
                raise file_not_found(file_id)

    async def create(self, principal: Principal, raw: bytes, body: dict[str, Any]) -> Response:
        await self.check_files(principal.user_id, file_ids_of(body))
        reply = await self.upstream.request("POST", "/vector_stores", raw)
        created = upstream_object(reply.content)
        row = VectorStore(
            id=created["id"],
            user_id=principal.user_id,
            api_key_id=principal.key_id,
            team_id=principal.team_id,
            snapshot=created,
            usage_bytes=usage_bytes_of(created),
        )
        try:
            async with self.sessionmaker.begin() as session:
                await VectorStoreRepository(session).create(row)
        except DB_ERRORS:
            # A store nobody owns could be neither reached nor deleted, yet would bill storage.
            log.exception("could not record the owner of vector store %s; deleting it upstream", row.id)
            with suppress(GatewayError):
                await self.upstream.request("DELETE", f"/vector_stores/{path_id(row.id)}")
            raise ServiceUnavailable("Tollgate could not record the vector store, so it was not kept.") from None
        log.info("vector store %s created", row.id)
        return relay(reply)

    async def list(self, owner_id: str, params: PageParams) -> Response:
        """``owner_id``'s stores: the caller's, or the user an admin asked for."""
        async with self.sessionmaker() as session:
            repo = VectorStoreRepository(session)
            lookup = lambda id_: repo.get_owned(id_, owner_id)  # noqa: E731 - one use
            anchor = await cursor_anchor(params, lookup, "vector store")
            rows, has_more = await repo.page(owner_id, params, anchor)
        return list_of([row.snapshot for row in rows], has_more)

    async def owned(self, principal: Principal, store_id: str, action: ObjectAction = "object.read") -> str:
        """The store's upstream path, once the caller may reach it: its own, or for an admin any
        (support access, audited), even one made upstream outside Tollgate."""
        return (await self._reach(principal, store_id, action))[0]

    async def _reach(self, principal: Principal, store_id: str, action: ObjectAction) -> tuple[str, str]:
        """The store's upstream path, and whose files may be added to it: its owner's (the
        admin's own when nobody is known to own the store)."""
        async with self.sessionmaker.begin() as session:
            repo = VectorStoreRepository(session)
            find = lambda owner: repo.get_owned(store_id, owner)  # noqa: E731 - one use
            found = await reach_upstream(session, principal, Target("vector_store", store_id), find, action)
        if found is None:
            raise store_not_found(store_id)
        return f"/vector_stores/{path_id(found.id)}", found.owner_id or principal.user_id

    async def _refreshed(self, store_id: str, reply: Reply) -> Response:
        """Keeps the caller's list showing what upstream last said about the store."""
        obj = upstream_object(reply.content)
        async with self.sessionmaker.begin() as session:
            await VectorStoreRepository(session).refresh(store_id, obj, usage_bytes_of(obj))
        return relay(reply)

    async def retrieve(self, principal: Principal, store_id: str) -> Response:
        path = await self.owned(principal, store_id)
        return await self._refreshed(store_id, await self.upstream.request("GET", path))

    async def update(self, principal: Principal, store_id: str, raw: bytes) -> Response:
        path = await self.owned(principal, store_id, "object.updated")
        return await self._refreshed(store_id, await self.upstream.request("POST", path, raw))

    async def delete(self, principal: Principal, store_id: str) -> Response:
        path = await self.owned(principal, store_id, "object.deleted")
        try:
            content = (await self.upstream.request("DELETE", path)).content
        except NotFound:
            # Already gone upstream (expired by its expires_after): the owner row is all that is left.
            content = Deleted(id=store_id, object="vector_store.deleted").model_dump_json().encode()
        async with self.sessionmaker.begin() as session:
            await VectorStoreRepository(session).remove(store_id)
        log.info("vector store %s deleted", store_id)
        return Response(content, media_type="application/json")

    async def search(self, principal: Principal, store_id: str, raw: bytes) -> Response:
        """Not billed by OpenAI on its own (file_search tool calls are, in the call that uses it)."""
        path = await self.owned(principal, store_id)
        reply = await self.upstream.request("POST", f"{path}/search", raw)
        log.info("vector store %s searched", store_id)
        return relay(reply)

    async def attach_file(self, principal: Principal, store_id: str, raw: bytes, body: dict[str, Any]) -> Response:
        file_ids = file_ids_of(body, single=True)
        path, files_of = await self._reach(principal, store_id, "object.updated")
        await self.check_files(files_of, file_ids)
        return relay(await self.upstream.request("POST", f"{path}/files", raw))

    async def list_files(self, principal: Principal, store_id: str, query: Iterable[tuple[str, str]]) -> Response:
        path = await self.owned(principal, store_id)
        return relay(await self.upstream.request("GET", f"{path}/files{forward_query(query, _LIST_FILES_QUERY)}"))

    async def file(self, principal: Principal, store_id: str, file_id: str, method: str, raw: bytes | None) -> Response:
        """Retrieve (GET), update attributes (POST) or detach (DELETE) one of the store's files."""
        path = await self.owned(principal, store_id, "object.read" if method == "GET" else "object.updated")
        return relay(await self.upstream.request(method, f"{path}/files/{path_id(file_id)}", raw))

    async def file_content(self, principal: Principal, store_id: str, file_id: str) -> Response:
        path = await self.owned(principal, store_id)
        return relay(await self.upstream.request("GET", f"{path}/files/{path_id(file_id)}/content"))

    async def create_file_batch(
        self, principal: Principal, store_id: str, raw: bytes, body: dict[str, Any]
    ) -> Response:
        file_ids = file_ids_of(body, limit=MAX_BATCH_FILES)
        path, files_of = await self._reach(principal, store_id, "object.updated")
        await self.check_files(files_of, file_ids)
        return relay(await self.upstream.request("POST", f"{path}/file_batches", raw))

    async def file_batch(self, principal: Principal, store_id: str, batch_id: str, action: str = "") -> Response:
        """Retrieve a file batch (``action`` empty), ``cancel`` it, or list its ``files``."""
        path = await self.owned(principal, store_id, "object.updated" if action == "cancel" else "object.read")
        method = "POST" if action == "cancel" else "GET"
        suffix = f"/{action}" if action else ""
        return relay(await self.upstream.request(method, f"{path}/file_batches/{path_id(batch_id)}{suffix}"))

    async def batch_files(
        self, principal: Principal, store_id: str, batch_id: str, query: Iterable[tuple[str, str]]
    ) -> Response:
        path = await self.owned(principal, store_id)
        files = f"{path}/file_batches/{path_id(batch_id)}/files{forward_query(query, _LIST_FILES_QUERY)}"
        return relay(await self.upstream.request("GET", files))
