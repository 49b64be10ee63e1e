"""Assistants, kept per user. Services never commit: the request session does, once."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.api_keys.schemas import Principal
from app.assistants.repository import AssistantRepository
from app.assistants.schemas import AssistantCreate, AssistantUpdate
from app.audit.schemas import ObjectAction
from app.audit.support import Target, reach
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


async def get(
    session: AsyncSession, principal: Principal, assistant_id: str, action: ObjectAction = "object.read"
) -> Assistant:
    """The caller's assistant; for an admin anyone's (support access, audited)."""
    repo = AssistantRepository(session)
    target = Target("assistant", assistant_id)
    assistant = await reach(session, principal, target, lambda owner: repo.get_owned(assistant_id, owner), action)
    if assistant is None:
        raise not_found(assistant_id)
    return assistant


async def update(session: AsyncSession, principal: Principal, assistant_id: str, data: AssistantUpdate) -> Assistant:
    assistant = await get(session, principal, assistant_id, "object.updated")
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
    await AssistantRepository(session).delete(await get(session, principal, assistant_id, "object.deleted"))


async def own(session: AsyncSession, principal: Principal, assistant_id: str) -> Assistant:
    """The caller's own assistant, admin or not: what a run it pays for may use."""
    assistant = await AssistantRepository(session).get_owned(assistant_id, principal.user_id)
    if assistant is None:
        raise not_found(assistant_id)
    return assistant


async def page(session: AsyncSession, owner_id: str, params: PageParams) -> tuple[list[Assistant], bool]:
    repo = AssistantRepository(session)
    anchor = await cursor_anchor(params, lambda id_: repo.get_owned(id_, owner_id), "assistant")
    rows, has_more = await repo.page(owner_id, params, anchor)
    return list(rows), has_more
