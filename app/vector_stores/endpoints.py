"""``/v1/vector_stores``, their files and file batches, and search: per user, owner-checked."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from starlette.responses import Response

from app.api_keys.dependencies import CurrentPrincipal
from app.audit.dependencies import listed_owner
from app.gateway.dependencies import read_json_object
from app.kit.pagination import Page
from app.vector_stores.dependencies import VectorStoresDep

router = APIRouter(prefix="/v1/vector_stores", tags=["vector stores"])

_BODY_DOC = {"requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}}


@router.post("", openapi_extra=_BODY_DOC)
async def create_vector_store(request: Request, principal: CurrentPrincipal, stores: VectorStoresDep) -> Response:
    raw, body = await read_json_object(request)
    return await stores.create(principal, raw, body)


@router.get("")
async def list_vector_stores(
    owner: Annotated[str, listed_owner("vector_store")], stores: VectorStoresDep, page: Page
) -> Response:
    return await stores.list(owner, page)


@router.get("/{store_id}")
async def retrieve_vector_store(store_id: str, principal: CurrentPrincipal, stores: VectorStoresDep) -> Response:
    return await stores.retrieve(principal, store_id)


@router.post("/{store_id}", openapi_extra=_BODY_DOC)
async def update_vector_store(
    store_id: str, request: Request, principal: CurrentPrincipal, stores: VectorStoresDep
) -> Response:
    raw, _ = await read_json_object(request)
    return await stores.update(principal, store_id, raw)


@router.delete("/{store_id}")
async def delete_vector_store(store_id: str, principal: CurrentPrincipal, stores: VectorStoresDep) -> Response:
    return await stores.delete(principal, store_id)


@router.post("/{store_id}/search", openapi_extra=_BODY_DOC)
async def search_vector_store(
    store_id: str, request: Request, principal: CurrentPrincipal, stores: VectorStoresDep
) -> Response:
    raw, _ = await read_json_object(request)
    return await stores.search(principal, store_id, raw)


@router.post("/{store_id}/files", openapi_extra=_BODY_DOC)
async def attach_file(
    store_id: str, request: Request, principal: CurrentPrincipal, stores: VectorStoresDep
) -> Response:
    raw, body = await read_json_object(request)
    return await stores.attach_file(principal, store_id, raw, body)


@router.get("/{store_id}/files")
async def list_store_files(
    store_id: str, request: Request, principal: CurrentPrincipal, stores: VectorStoresDep
) -> Response:
    return await stores.list_files(principal, store_id, request.query_params.multi_items())


@router.get("/{store_id}/files/{file_id}")
async def retrieve_store_file(
    store_id: str, file_id: str, principal: CurrentPrincipal, stores: VectorStoresDep
) -> Response:
    return await stores.file(principal, store_id, file_id, "GET", None)


@router.post("/{store_id}/files/{file_id}", openapi_extra=_BODY_DOC)
async def update_store_file(
    store_id: str, file_id: str, request: Request, principal: CurrentPrincipal, stores: VectorStoresDep
) -> Response:
    raw, _ = await read_json_object(request)
    return await stores.file(principal, store_id, file_id, "POST", raw)


@router.delete("/{store_id}/files/{file_id}")
async def detach_store_file(
    store_id: str, file_id: str, principal: CurrentPrincipal, stores: VectorStoresDep
) -> Response:
    return await stores.file(principal, store_id, file_id, "DELETE", None)


@router.get("/{store_id}/files/{file_id}/content")
async def store_file_content(
    store_id: str, file_id: str, principal: CurrentPrincipal, stores: VectorStoresDep
) -> Response:
    return await stores.file_content(principal, store_id, file_id)


@router.post("/{store_id}/file_batches", openapi_extra=_BODY_DOC)
async def create_file_batch(
    store_id: str, request: Request, principal: CurrentPrincipal, stores: VectorStoresDep
) -> Response:
    raw, body = await read_json_object(request)
    return await stores.create_file_batch(principal, store_id, raw, body)


@router.get("/{store_id}/file_batches/{batch_id}")
async def retrieve_file_batch(
    store_id: str, batch_id: str, principal: CurrentPrincipal, stores: VectorStoresDep
) -> Response:
    return await stores.file_batch(principal, store_id, batch_id)


@router.post("/{store_id}/file_batches/{batch_id}/cancel")
async def cancel_file_batch(
    store_id: str, batch_id: str, principal: CurrentPrincipal, stores: VectorStoresDep
) -> Response:
    return await stores.file_batch(principal, store_id, batch_id, "cancel")


@router.get("/{store_id}/file_batches/{batch_id}/files")
async def list_file_batch_files(
    store_id: str, batch_id: str, request: Request, principal: CurrentPrincipal, stores: VectorStoresDep
) -> Response:
    return await stores.batch_files(principal, store_id, batch_id, request.query_params.multi_items())
