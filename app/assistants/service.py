"""Assistants, kept per user. Services never commit: the request session does, once."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.api_keys.schemas import Principal
from app.assistants.repository import AssistantRepository
from app.assistants.schemas import AssistantCreate, AssistantUpdate
from app.errors import InvalidRequest, NotFound
from app.kit.crypto import new_id
from app.kit.pagination import PageParams, cursor_anchor
from app.models import Assistant


def not_found(assistant_id: str) -> NotFound:
    return NotFound(f"No assistant found with id '{assistant_id}'.", param="assistant_id")


async def create(session: AsyncSession, principal: Principal, data: AssistantCreate) -> Assistant:
    assistant = Assistant(
        id=new_id("asst"),
        user_id=principal.user_id,
        model=data.model,
        name=data.name,
        description=data.description,
        instructions=data.instructions,
        tools=data.tools,
        tool_resources=data.tool_resources,
        meta=data.metadata or {},
        temperature=data.temperature,
        top_p=data.top_p,
        response_format=data.response_format,
        reasoning_effort=data.reasoning_effort,
    )
    return await AssistantRepository(session).create(assistant)


async def get(session: AsyncSession, principal: Principal, assistant_id: str) -> Assistant:
    assistant = await AssistantRepository(session).get_owned(assistant_id, principal.user_id)
    if assistant is None:
        raise not_found(assistant_id)
    return assistant


async def update(session: AsyncSession, principal: Principal, assistant_id: str, data: AssistantUpdate) -> Assistant:
    assistant = await get(session, principal, assistant_id)
    for field in data.model_fields_set:
        value = getattr(data, field)
        if field == "metadata":
            assistant.meta = value or {}
        elif field == "tools":
            assistant.tools = value or []
        elif field == "model" and value is None:
            raise InvalidRequest("model cannot be null.", param="model")
        else:
            setattr(assistant, field, value)
    await session.flush()
    return assistant


async def delete(session: AsyncSession, principal: Principal, assistant_id: str) -> None:
    await AssistantRepository(session).delete(await get(session, principal, assistant_id))


async def page(session: AsyncSession, principal: Principal, params: PageParams) -> tuple[list[Assistant], bool]:
    repo = AssistantRepository(session)
    anchor = await cursor_anchor(params, lambda id_: repo.get_owned(id_, principal.user_id), "assistant")
    rows, has_more = await repo.page(principal.user_id, params, anchor)
    return list(rows), has_more
