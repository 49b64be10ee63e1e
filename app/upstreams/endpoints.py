"""``/admin/upstreams``: the upstream keys and servers, changed without a restart."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response

from app.api_keys.dependencies import AdminPrincipal
from app.audit.schemas import Actor
from app.db import SessionDep
from app.kit.schemas import ListResponse
from app.upstreams.schemas import Upstream, UpstreamPut
from app.upstreams.service import UpstreamDirectory

router = APIRouter(prefix="/admin/upstreams", tags=["admin: upstreams"])
Name = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")]


async def get_directory(request: Request) -> UpstreamDirectory:
    directory: UpstreamDirectory = request.app.state.upstreams
    return directory


Directory = Annotated[UpstreamDirectory, Depends(get_directory)]


@router.get("", response_model=ListResponse[Upstream])
async def list_upstreams(session: SessionDep, directory: Directory, _: AdminPrincipal) -> ListResponse[Upstream]:
    return ListResponse(data=await directory.views(session))


@router.put("/{name}", response_model=Upstream)
async def put_upstream(
    name: Name, data: UpstreamPut, session: SessionDep, directory: Directory, admin: AdminPrincipal
) -> Upstream:
    return await directory.put(session, name, data, Actor.of(admin))


@router.delete("/{name}", status_code=204)
async def delete_upstream(name: Name, session: SessionDep, directory: Directory, admin: AdminPrincipal) -> Response:
    await directory.delete(session, name, Actor.of(admin))
    return Response(status_code=204)
