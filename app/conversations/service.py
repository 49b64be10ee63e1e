"""The Conversations API through Tollgate. Conversations and their items are stored upstream;
Tollgate records each one's owner (every id route checks it), its metadata and creation time
(so a caller can list its own conversations, which OpenAI cannot), and an upper bound on its
items' tokens (what a response in the conversation must reserve for).

Conversation routes are not billed by OpenAI, so they are not metered. No DB session is held
across an upstream call.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.responses import Response

from app.api_keys.schemas import Principal
from app.audit.schemas import ObjectAction
from app.audit.support import Target, reach_upstream
from app.conversations.repository import ConversationRepository
from app.conversations.schemas import ConversationCreate, ConversationUpdate, ItemsCreate
from app.errors import UpstreamError
from app.gateway.upstream import Upstream, forward_query, path_id
from app.kit.pagination import PageParams, cursor_anchor
from app.kit.tokens import estimate_responses_prompt
from app.models import Conversation
from app.responses.schemas import check_input
from app.responses.service import conversation_not_found, relay

_READ_QUERY = frozenset({"include", "include[]"})
_LIST_QUERY = frozenset({"limit", "order", "after", "include", "include[]"})
# Items are counted with the current models' encoding; the count is a reservation bound, not a bill.
_COUNTING_MODEL = "gpt-4o"


def items_tokens(items: list[dict[str, Any]] | None) -> int:
    return estimate_responses_prompt(_COUNTING_MODEL, {"input": items}) if items else 0


class Conversations:
    def __init__(self, upstream: Upstream, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.upstream = upstream
        self.sessionmaker = sessionmaker

    async def create(self, user_id: str, data: ConversationCreate) -> Response:
        check_input(data.items, "items")
        body = data.model_dump(exclude_unset=True)
        reply = await self.upstream.request("POST", "/conversations", json.dumps(body).encode())
        created = _object_of(reply.content)
        row = Conversation(
            id=created["id"],
            user_id=user_id,
            meta=created.get("metadata") or {},
            context_tokens=items_tokens(data.items),
            upstream_created_at=_unix(created.get("created_at")),
        )
        async with self.sessionmaker.begin() as session:
            await ConversationRepository(session).create(row)
        return relay(reply)

    async def _owned(self, principal: Principal, conversation_id: str, action: ObjectAction = "object.read") -> str:
        """The id as an upstream path segment, once the caller may reach it: its own, or for an
        admin any (support access, audited), even one made upstream outside Tollgate."""
        async with self.sessionmaker.begin() as session:
            repo = ConversationRepository(session)
            found = await reach_upstream(
                session,
                principal,
                Target("conversation", conversation_id),
                lambda owner: repo.get_owned(conversation_id, owner),
                action,
            )
        if found is None:
            raise conversation_not_found(conversation_id)
        return path_id(found.id)

    async def retrieve(self, principal: Principal, conversation_id: str) -> Response:
        path = await self._owned(principal, conversation_id)
        return relay(await self.upstream.request("GET", f"/conversations/{path}"))

    async def update(self, principal: Principal, conversation_id: str, data: ConversationUpdate) -> Response:
        path = await self._owned(principal, conversation_id, "object.updated")
        body = json.dumps(data.model_dump(exclude_unset=True)).encode()
        reply = await self.upstream.request("POST", f"/conversations/{path}", body)
        updated = _object_of(reply.content)
        async with self.sessionmaker.begin() as session:
            row = await ConversationRepository(session).get_by_id(conversation_id)
            if row is not None:
                row.meta = updated.get("metadata") or {}
        return relay(reply)

    async def delete(self, principal: Principal, conversation_id: str) -> Response:
        path = await self._owned(principal, conversation_id, "object.deleted")
        reply = await self.upstream.request("DELETE", f"/conversations/{path}")
        async with self.sessionmaker.begin() as session:
            repo = ConversationRepository(session)
            row = await repo.get_by_id(conversation_id)
            if row is not None:
                await repo.delete(row)
        return relay(reply)

    async def list(self, owner_id: str, params: PageParams) -> tuple[list[Conversation], bool]:
        """``owner_id``'s conversations (the caller's, or the user an admin asked for), newest
        first by default. Tollgate's own addition: OpenAI cannot list conversations."""
        async with self.sessionmaker() as session:
            repo = ConversationRepository(session)
            anchor = await cursor_anchor(params, lambda id_: repo.get_owned(id_, owner_id), "conversation")
            rows, has_more = await repo.page(owner_id, params, anchor)
        return list(rows), has_more

    async def create_items(
        self, principal: Principal, conversation_id: str, data: ItemsCreate, query: Iterable[tuple[str, str]]
    ) -> Response:
        check_input(data.items, "items")
        path = await self._owned(principal, conversation_id, "object.updated")
        body = json.dumps(data.model_dump(exclude_unset=True)).encode()
        reply = await self.upstream.request(
            "POST", f"/conversations/{path}/items{forward_query(query, _READ_QUERY)}", body
        )
        async with self.sessionmaker.begin() as session:
            await ConversationRepository(session).add_context(conversation_id, items_tokens(data.items))
        return relay(reply)

    async def list_items(
        self, principal: Principal, conversation_id: str, query: Iterable[tuple[str, str]]
    ) -> Response:
        path = await self._owned(principal, conversation_id)
        items = f"/conversations/{path}/items{forward_query(query, _LIST_QUERY)}"
        return relay(await self.upstream.request("GET", items))

    async def retrieve_item(
        self, principal: Principal, conversation_id: str, item_id: str, query: Iterable[tuple[str, str]]
    ) -> Response:
        path = await self._owned(principal, conversation_id)
        item = f"/conversations/{path}/items/{path_id(item_id)}{forward_query(query, _READ_QUERY)}"
        return relay(await self.upstream.request("GET", item))

    async def delete_item(self, principal: Principal, conversation_id: str, item_id: str) -> Response:
        path = await self._owned(principal, conversation_id, "object.updated")
        return relay(await self.upstream.request("DELETE", f"/conversations/{path}/items/{path_id(item_id)}"))


def _object_of(content: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(content)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("id"), str):
        raise UpstreamError("The upstream API returned a malformed response.")
    return parsed


def _unix(value: Any) -> int:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    return int(time.time())
