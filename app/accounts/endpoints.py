from __future__ import annotations

from fastapi import APIRouter

from app.accounts import service
from app.accounts.schemas import Team, TeamCreate, User, UserCreate
from app.api_keys.dependencies import AdminPrincipal
from app.audit.schemas import Actor
from app.db import SessionDep
from app.kit.schemas import ListResponse

router = APIRouter(prefix="/admin", tags=["admin: accounts"])


@router.post("/teams", status_code=201, response_model=Team)
async def create_team(data: TeamCreate, session: SessionDep, admin: AdminPrincipal) -> Team:
    return Team.model_validate(await service.create_team(session, data, Actor.of(admin)))


@router.get("/teams", response_model=ListResponse[Team])
async def list_teams(session: SessionDep, _: AdminPrincipal) -> ListResponse[Team]:
    return ListResponse(data=[Team.model_validate(t) for t in await service.list_teams(session)])


@router.post("/users", status_code=201, response_model=User)
async def create_user(data: UserCreate, session: SessionDep, admin: AdminPrincipal) -> User:
    return User.model_validate(await service.create_user(session, data, Actor.of(admin)))


@router.get("/users", response_model=ListResponse[User])
async def list_users(session: SessionDep, _: AdminPrincipal, team: str | None = None) -> ListResponse[User]:
    return ListResponse(data=[User.model_validate(u) for u in await service.list_users(session, team)])


@router.get("/users/{user_ref}", response_model=User)
async def get_user(user_ref: str, session: SessionDep, _: AdminPrincipal) -> User:
    return User.model_validate(await service.get_user(session, user_ref))
