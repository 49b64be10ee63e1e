from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import or_, select

from app.kit.repository import RepositoryBase
from app.models import Team, User


class TeamRepository(RepositoryBase[Team]):
    model = Team

    async def get_by_ref(self, ref: str) -> Team | None:
        """A team by id or by name: the CLI and API accept either."""
        return await self.get_one_or_none(select(Team).where(or_(Team.id == ref, Team.name == ref)))

    async def list_all(self) -> Sequence[Team]:
        return await self.get_all(select(Team).order_by(Team.created_at, Team.id))


class UserRepository(RepositoryBase[User]):
    model = User

    async def get_by_ref(self, ref: str) -> User | None:
        return await self.get_one_or_none(select(User).where(or_(User.id == ref, User.name == ref)))

    async def list_all(self, team_id: str | None = None) -> Sequence[User]:
        statement = select(User).order_by(User.created_at, User.id)
        if team_id is not None:
            statement = statement.where(User.team_id == team_id)
        return await self.get_all(statement)
