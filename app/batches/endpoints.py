"""``/v1/batches``: created from the caller's own files, reserved at batch prices, owner-checked."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from starlette.responses import Response

from app.api_keys.dependencies import CurrentPrincipal
from app.audit.dependencies import listed_owner
from app.batches.dependencies import BatchesDep
from app.gateway.endpoints import metered_call
from app.kit.pagination import Page

router = APIRouter(prefix="/v1/batches", tags=["batches"])

_BODY_DOC = {"requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}}


@router.post("", openapi_extra=_BODY_DOC)
async def create_batch(request: Request, batches: BatchesDep) -> Response:
    _, context, raw, body = await metered_call(request, "batches")
    return await batches.create(context, raw, body)


@router.get("")
async def list_batches(owner: Annotated[str, listed_owner("batch")], batches: BatchesDep, page: Page) -> Response:
    return await batches.list(owner, page)


@router.get("/{batch_id}")
async def retrieve_batch(batch_id: str, principal: CurrentPrincipal, batches: BatchesDep) -> Response:
    return await batches.retrieve(principal, batch_id)


@router.post("/{batch_id}/cancel")
async def cancel_batch(batch_id: str, principal: CurrentPrincipal, batches: BatchesDep) -> Response:
    return await batches.cancel(principal, batch_id)
