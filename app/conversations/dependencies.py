from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.conversations.service import Conversations


async def get_conversations(request: Request) -> Conversations:
    conversations: Conversations = request.app.state.conversations
    return conversations


ConversationsDep = Annotated[Conversations, Depends(get_conversations)]
