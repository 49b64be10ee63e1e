"""``/v1/assistants``: served by Tollgate itself, per user (OpenAI's Assistants API is gone)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request

from app.api_keys.dependencies import CurrentPrincipal
from app.assistants import service
from app.assistants.schemas import Assistant, AssistantCreate, AssistantUpdate
from app.audit.dependencies import listed_owner
from app.db import SessionDep
from app.gateway.service import Gateway
from app.kit.pagination import CursorPage, Page, cursor_page
from app.kit.schemas import Deleted

router = APIRouter(prefix="/v1/assistants", tags=["assistants"])


def _authorize_model(request: Request, principal: CurrentPrincipal, model: str | None) -> None:
    """An assistant's model must be one its runs could use: allowed for the key, and priced."""
    if model is not None:
        gateway: Gateway = request.app.state.gateway
        gateway.authorize(principal, model)


@router.post("", response_model=Assistant)
async def create_assistant(
    data: AssistantCreate, request: Request, principal: CurrentPrincipal, session: SessionDep
) -> Assistant:
    _authorize_model(request, principal, data.model)
    return Assistant.of(await service.create(session, principal, data))


@router.get("", response_model=CursorPage[Assistant])
async def list_assistants(
    owner: Annotated[str, listed_owner("assistant")], session: SessionDep, page: Page
) -> CursorPage[Assistant]:
    rows, has_more = await service.page(session, owner, page)
    return cursor_page([Assistant.of(r) for r in rows], has_more)


@router.get("/{assistant_id}", response_model=Assistant)
async def get_assistant(assistant_id: str, principal: CurrentPrincipal, session: SessionDep) -> Assistant:
    return Assistant.of(await service.get(session, principal, assistant_id))


@router.post("/{assistant_id}", response_model=Assistant)
async def update_assistant(
    assistant_id: str, data: AssistantUpdate, request: Request, principal: CurrentPrincipal, session: SessionDep
) -> Assistant:
    _authorize_model(request, principal, data.model)
    return Assistant.of(await service.update(session, principal, assistant_id, data))


@router.delete("/{assistant_id}", response_model=Deleted)
async def delete_assistant(assistant_id: str, principal: CurrentPrincipal, session: SessionDep) -> Deleted:
    await service.delete(session, principal, assistant_id)
    return Deleted(id=assistant_id, object="assistant.deleted")
