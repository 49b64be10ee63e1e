from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import case, select, update

from app.kit.ownership import Owner, owned_by
from app.kit.pagination import PageParams, keyset_page
from app.kit.repository import RepositoryBase
from app.models import Conversation


class ConversationRepository(RepositoryBase[Conversation]):
    model = Conversation

    async def get_owned(self, conversation_id: str, owner: Owner) -> Conversation | None:
        """Another user's conversation is as absent as an unknown one."""
        statement = select(Conversation).where(
            Conversation.id == conversation_id, owned_by(Conversation.user_id, owner)
        )
        return await self.get_one_or_none(statement)

    async def page(
        self, user_id: str, page: PageParams, anchor: tuple[datetime, str] | None
    ) -> tuple[Sequence[Conversation], bool]:
        statement = select(Conversation).where(Conversation.user_id == user_id)
        return await keyset_page(self.session, statement, (Conversation.created_at, Conversation.id), page, anchor)

    async def add_context(self, conversation_id: str, tokens: int) -> None:
        """Items were added: one atomic increment, so concurrent additions all count."""
        await self.session.execute(
            update(Conversation)
            .where(Conversation.id == conversation_id)
            .values(context_tokens=Conversation.context_tokens + tokens)
        )

    async def raise_context(self, conversation_id: str, tokens: int) -> None:
        """A response ran in the conversation: its input (all the items) plus its output is now
        the conversation. Never lowered: an overestimate only reserves more."""
        column = Conversation.context_tokens
        await self.session.execute(
            update(Conversation)
            .where(Conversation.id == conversation_id)
            .values(context_tokens=case((column < tokens, tokens), else_=column))
        )

    async def delete(self, conversation: Conversation) -> None:
        await self.session.delete(conversation)
        await self.session.flush()
