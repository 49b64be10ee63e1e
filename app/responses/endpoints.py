"""``/v1/responses``: created through the metered gateway, read only by their owner."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from app.api_keys.dependencies import CurrentPrincipal
from app.errors import InvalidRequest
from app.gateway.endpoints import metered_call
from app.responses.dependencies import ResponsesDep
from app.responses.service import Responses

router = APIRouter(prefix="/v1/responses", tags=["responses"])

_BODY_DOC = {"requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}}


@router.post("", openapi_extra=_BODY_DOC)
async def create_response(request: Request) -> Response:
    """Takes only the request, like the gateway's metered calls, so the fast lane serves it."""
    _, context, raw, body = await metered_call(request, "responses")
    responses: Responses = request.app.state.responses
    return await responses.create(context, raw, body)


@router.get("/{response_id}")
async def retrieve_response(
    response_id: str, request: Request, principal: CurrentPrincipal, responses: ResponsesDep
) -> Response:
    if request.query_params.get("stream") == "true":
        raise InvalidRequest(
            "Streaming a retrieved response is only for background responses, which Tollgate does not serve.",
            param="stream",
        )
    return await responses.retrieve(principal, response_id, request.query_params.multi_items())


@router.delete("/{response_id}")
async def delete_response(response_id: str, principal: CurrentPrincipal, responses: ResponsesDep) -> Response:
    return await responses.delete(principal, response_id)


@router.post("/{response_id}/cancel")
async def cancel_response(response_id: str, principal: CurrentPrincipal, responses: ResponsesDep) -> Response:
    return await responses.cancel(principal, response_id)


@router.get("/{response_id}/input_items")
async def list_input_items(
    response_id: str, request: Request, principal: CurrentPrincipal, responses: ResponsesDep
) -> Response:
    return await responses.input_items(principal, response_id, request.query_params.multi_items())
