"""Who may call which fine-tuned model, in memory: the check sits on the chat hot path, so it
never costs a database round trip. Every replica re-reads the tables every ``refresh_s``; the
replica that makes a change (a job's new model, an admin's grant) applies it at once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.api_keys.schemas import Principal
from app.fine_tuning.repository import ModelRepository
from app.models import FineTunedModel, FineTunedModelGrant


@dataclass(slots=True)
class Access:
    owner: str | None = None  # None: a model made outside Tollgate, reachable only by grants
    users: set[str] = field(default_factory=set)
    teams: set[str] = field(default_factory=set)

    def allows(self, principal: Principal) -> bool:
        return (
            principal.user_id == self.owner
            or principal.user_id in self.users
            or (principal.team_id is not None and principal.team_id in self.teams)
        )


class FineTunedDirectory:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessionmaker = sessionmaker
        self._access: dict[str, Access] = {}

    def allows(self, principal: Principal, model: str) -> bool:
        """Fine-tuned models (``ft:``) only: an unknown one is refused like another tenant's."""
        access = self._access.get(model)
        return access is not None and access.allows(principal)

    async def refresh(self) -> None:
        async with self.sessionmaker() as session:
            await self.load(session)

    async def load(self, session: AsyncSession) -> None:
        """Re-reads both tables (the caller's own uncommitted changes included) and swaps the
        map whole, so a check in progress sees the old map or the new one, never half of each."""
        repo = ModelRepository(session)
        self._access = build(await repo.all_models(), await repo.all_grants())

    def add_model(self, model: FineTunedModel) -> None:
        old = self._access.get(model.id) or Access()
        self._access = {**self._access, model.id: Access(model.user_id, set(old.users), set(old.teams))}


def build(models: Sequence[FineTunedModel], grants: Sequence[FineTunedModelGrant]) -> dict[str, Access]:
    access = {m.id: Access(m.user_id) for m in models}
    for grant in grants:
        entry = access.setdefault(grant.model, Access())
        (entry.users if grant.scope == "user" else entry.teams).add(grant.scope_id)
    return access
