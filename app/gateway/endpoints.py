from __future__ import annotations

import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.routing import APIRoute
from starlette.responses import Response

from app.api_keys.dependencies import CurrentPrincipal, get_principal
from app.gateway.catalog import ModelCatalog
from app.gateway.completions import create_completion, create_moderation
from app.gateway.dependencies import read_json_object
from app.gateway.service import CallContext, Gateway, model_not_found
from app.threads.service import ThreadChats

router = APIRouter(prefix="/v1", tags=["openai"])
# Names one of the caller's threads: the chat call continues that conversation and is stored in it.
THREAD_HEADER = "x-tollgate-thread-id"

_BODY_DOC = {"requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}}


async def get_catalog(request: Request) -> ModelCatalog:
    """Async on purpose: FastAPI runs plain-def dependencies in a thread pool, a hop per request."""
    catalog: ModelCatalog = request.app.state.catalog
    return catalog


CatalogDep = Annotated[ModelCatalog, Depends(get_catalog)]


async def metered_call(request: Request, endpoint: str) -> tuple[Gateway, CallContext, bytes, dict[str, Any]]:
    """The caller, the context and the body of a metered call, resolved in plain calls rather than
    as FastAPI dependencies: on these hot routes, dependency solving cost more CPU per request
    than everything Tollgate does outside the database and upstream calls."""
    principal = await get_principal(request)
    raw, body = await read_json_object(request)
    state = request.scope.get("state", {})
    context = CallContext(
        principal=principal,
        request_id=state.get("request_id") or "",
        started=state.get("started") or time.perf_counter(),
        endpoint=endpoint,
    )
    return request.app.state.gateway, context, raw, body


@router.post("/chat/completions", openapi_extra=_BODY_DOC)
async def chat_completions(request: Request) -> Response:
    gateway, context, raw, body = await metered_call(request, "chat.completions")
    thread_id = request.headers.get(THREAD_HEADER)
    if thread_id is None:
        return await gateway.chat(context, raw, body)
    chats: ThreadChats = request.app.state.thread_chats
    body, record = await chats.prepare(context.principal, thread_id, body)
    return await gateway.chat(context, json.dumps(body).encode(), body, on_answer=record)


@router.post("/embeddings", openapi_extra=_BODY_DOC)
async def embeddings(request: Request) -> Response:
    gateway, context, raw, body = await metered_call(request, "embeddings")
    return await gateway.embeddings(context, raw, body)


@router.post("/completions", openapi_extra=_BODY_DOC)
async def completions(request: Request) -> Response:
    gateway, context, raw, body = await metered_call(request, "completions")
    return await create_completion(gateway, context, raw, body)


@router.post("/moderations", openapi_extra=_BODY_DOC)
async def moderations(request: Request) -> Response:
    gateway, context, raw, body = await metered_call(request, "moderations")
    return await create_moderation(gateway, context, raw, body)


@router.get("/models")
async def list_models(principal: CurrentPrincipal, catalog: CatalogDep) -> Response:
    return await catalog.list_for(principal)


@router.get("/models/{model:path}")
async def retrieve_model(model: str, principal: CurrentPrincipal, catalog: CatalogDep) -> Response:
    # Names may hold "/" (vLLM's "org/model"), never a "." or ".." segment: upstreams and proxies
    # in between may resolve those as paths.
    if not principal.may_use(model) or {".", ".."} & set(model.split("/")) or catalog.hidden(principal, model):
        raise model_not_found(model)
    return await catalog.retrieve(model)


def hot_routes() -> list[APIRoute]:
    """The gateway's metered calls, which the fast lane (app/kit/fast_lane.py) serves past FastAPI's router."""
    return [route for route in router.routes if isinstance(route, APIRoute) and "POST" in (route.methods or ())]
