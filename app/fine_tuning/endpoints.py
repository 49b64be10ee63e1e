"""``/v1/fine_tuning/jobs``: priced and reserved on create, owner-checked on every id; and the
admin routes that share a fine-tuned model with other users or teams."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from starlette.responses import Response

from app.api_keys.dependencies import AdminPrincipal, CurrentPrincipal
from app.audit.dependencies import listed_owner
from app.db import SessionDep
from app.fine_tuning import admin
from app.fine_tuning.dependencies import DirectoryDep, FineTuningDep, JobPage
from app.fine_tuning.schemas import FineTunedModelView, Grant, GrantCreate
from app.gateway.endpoints import metered_call
from app.kit.schemas import ListResponse

router = APIRouter(prefix="/v1/fine_tuning/jobs", tags=["fine-tuning"])
admin_router = APIRouter(prefix="/admin/fine-tuned-models", tags=["admin: fine-tuned models"])

_BODY_DOC = {"requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}}


@router.post("", openapi_extra=_BODY_DOC)
async def create_job(request: Request, jobs: FineTuningDep) -> Response:
    _, context, raw, body = await metered_call(request, "fine_tuning.jobs")
    return await jobs.create(context, raw, body)


@router.get("")
async def list_jobs(
    owner: Annotated[str, listed_owner("fine_tuning.job")], jobs: FineTuningDep, page: JobPage
) -> Response:
    return await jobs.page(owner, page)


@router.get("/{job_id}")
async def retrieve_job(job_id: str, principal: CurrentPrincipal, jobs: FineTuningDep) -> Response:
    return await jobs.retrieve(principal, job_id)


@router.post("/{job_id}/cancel")
async def cancel_job(job_id: str, principal: CurrentPrincipal, jobs: FineTuningDep) -> Response:
    return await jobs.act(principal, job_id, "cancel")


@router.post("/{job_id}/pause")
async def pause_job(job_id: str, principal: CurrentPrincipal, jobs: FineTuningDep) -> Response:
    return await jobs.act(principal, job_id, "pause")


@router.post("/{job_id}/resume")
async def resume_job(job_id: str, principal: CurrentPrincipal, jobs: FineTuningDep) -> Response:
    return await jobs.act(principal, job_id, "resume")


@router.get("/{job_id}/events")
async def list_events(job_id: str, request: Request, principal: CurrentPrincipal, jobs: FineTuningDep) -> Response:
    return await jobs.listing(principal, job_id, "events", request.query_params.multi_items())


@router.get("/{job_id}/checkpoints")
async def list_checkpoints(job_id: str, request: Request, principal: CurrentPrincipal, jobs: FineTuningDep) -> Response:
    return await jobs.listing(principal, job_id, "checkpoints", request.query_params.multi_items())


@admin_router.get("", response_model=ListResponse[FineTunedModelView])
async def list_models(session: SessionDep, _: AdminPrincipal) -> ListResponse[FineTunedModelView]:
    return ListResponse(data=await admin.list_models(session))


@admin_router.post("/{model}/grants", status_code=201, response_model=Grant)
async def grant_model(
    model: str, data: GrantCreate, session: SessionDep, _: AdminPrincipal, directory: DirectoryDep
) -> Grant:
    return await admin.grant(session, directory, model, data)


@admin_router.delete("/{model}/grants/{scope}/{scope_id}", status_code=204)
async def revoke_grant(
    model: str, scope: str, scope_id: str, session: SessionDep, _: AdminPrincipal, directory: DirectoryDep
) -> Response:
    await admin.revoke(session, directory, model, scope, scope_id)
    return Response(status_code=204)
