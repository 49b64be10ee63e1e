"""Team and user management. Services flush; the caller's session commits."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.repository import TeamRepository, UserRepository
from app.accounts.schemas import TeamCreate, UserCreate
from app.audit import service as audit
from app.audit.schemas import Actor
from app.errors import Conflict, NotFound
from app.kit.crypto import new_id
from app.models import Team, User


async def create_team(session: AsyncSession, data: TeamCreate, actor: Actor) -> Team:
    repo = TeamRepository(session)
    if await repo.get_by_ref(data.name) is not None:
        raise Conflict(f"A team named '{data.name}' already exists.", param="name")
    team = await repo.create(Team(id=new_id("team"), name=data.name))
    await audit.record(session, actor, "team.created", "team", team.id, detail={"name": team.name})
    return team


async def list_teams(session: AsyncSession) -> Sequence[Team]:
    return await TeamRepository(session).list_all()


async def get_team(session: AsyncSession, ref: str) -> Team:
    team = await TeamRepository(session).get_by_ref(ref)
    if team is None:
        raise NotFound(f"No team '{ref}'.", param="team", code="team_not_found")
    return team


async def create_user(session: AsyncSession, data: UserCreate, actor: Actor) -> User:
    repo = UserRepository(session)
    if await repo.get_by_ref(data.name) is not None:
        raise Conflict(f"A user named '{data.name}' already exists.", param="name")
    team_id = (await get_team(session, data.team)).id if data.team else None
    user = await repo.create(User(id=new_id("user"), name=data.name, team_id=team_id, role=data.role))
    await record_user_created(session, actor, user)
    return user


async def record_user_created(session: AsyncSession, actor: Actor, user: User) -> None:
    detail = {"name": user.name, "role": user.role, "team_id": user.team_id}
    await audit.record(session, actor, "user.created", "user", user.id, owner_id=user.id, detail=detail)


async def list_users(session: AsyncSession, team: str | None = None) -> Sequence[User]:
    team_id = (await get_team(session, team)).id if team else None
    return await UserRepository(session).list_all(team_id)


async def get_user(session: AsyncSession, ref: str) -> User:
    user = await UserRepository(session).get_by_ref(ref)
    if user is None:
        raise NotFound(f"No user '{ref}'.", param="user", code="user_not_found")
    return user
