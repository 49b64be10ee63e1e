from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from app.api_keys.dependencies import CurrentPrincipal
from app.gateway.catalog import ModelCatalog
from app.gateway.dependencies import JsonBody
from app.gateway.service import CallContext, Gateway, model_not_found

router = APIRouter(prefix="/v1", tags=["openai"])

_BODY_DOC = {"requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}}


async def get_gateway(request: Request) -> Gateway:
    """Async on purpose: FastAPI runs plain-def dependencies in a thread pool, a hop per request."""
    gateway: Gateway = request.app.state.gateway
    return gateway


async def get_catalog(request: Request) -> ModelCatalog:
    catalog: ModelCatalog = request.app.state.catalog
    return catalog


GatewayDep = Annotated[Gateway, Depends(get_gateway)]
CatalogDep = Annotated[ModelCatalog, Depends(get_catalog)]


def _context(request: Request, principal: CurrentPrincipal, endpoint: str) -> CallContext:
    state = request.scope.get("state", {})
    return CallContext(
        principal=principal,
        request_id=state.get("request_id") or "",
        started=state.get("started") or time.perf_counter(),
        endpoint=endpoint,
    )


@router.post("/chat/completions", openapi_extra=_BODY_DOC)
async def chat_completions(
    request: Request, principal: CurrentPrincipal, body: JsonBody, gateway: GatewayDep
) -> Response:
    return await gateway.chat(_context(request, principal, "chat.completions"), *body)


@router.post("/embeddings", openapi_extra=_BODY_DOC)
async def embeddings(request: Request, principal: CurrentPrincipal, body: JsonBody, gateway: GatewayDep) -> Response:
    return await gateway.embeddings(_context(request, principal, "embeddings"), *body)


@router.get("/models")
async def list_models(principal: CurrentPrincipal, catalog: CatalogDep) -> Response:
    return await catalog.list_for(principal)


@router.get("/models/{model:path}")
async def retrieve_model(model: str, principal: CurrentPrincipal, catalog: CatalogDep) -> Response:
    if not principal.may_use(model):
        raise model_not_found(model)
    return await catalog.retrieve(model)
