"""Admins share a fine-tuned model with users or teams (its owner always has it). A change takes
effect on this replica at once and on the others within ``refresh_s``."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.service import get_team, get_user
from app.errors import InvalidRequest, NotFound
from app.fine_tuning.directory import FineTunedDirectory
from app.fine_tuning.repository import ModelRepository
from app.fine_tuning.schemas import FineTunedModelView, Grant, GrantCreate


async def list_models(session: AsyncSession) -> list[FineTunedModelView]:
    repo = ModelRepository(session)
    models = {m.id: m for m in await repo.all_models()}
    views: dict[str, FineTunedModelView] = {}
    for model_id, model in models.items():
        views[model_id] = FineTunedModelView(
            id=model_id, owner=model.user_id, base_model=model.base_model, job_id=model.job_id, users=[], teams=[]
        )
    for grant in await repo.all_grants():
        view = views.setdefault(
            grant.model,
            FineTunedModelView(id=grant.model, owner=None, base_model=None, job_id=None, users=[], teams=[]),
        )
        (view.users if grant.scope == "user" else view.teams).append(grant.scope_id)
    return [views[k] for k in sorted(views)]


async def grant(session: AsyncSession, directory: FineTunedDirectory | None, model: str, data: GrantCreate) -> Grant:
    """``directory``: this process's, to apply the change at once (None from the CLI)."""
    if not model.startswith("ft:"):
        raise InvalidRequest(
            "Only fine-tuned models (ft:...) are granted; others follow the key's models.", param="model"
        )
    scope_id = (
        (await get_user(session, data.scope_id)).id
        if data.scope == "user"
        else (await get_team(session, data.scope_id)).id
    )
    row = await ModelRepository(session).grant(model, data.scope, scope_id)
    if directory is not None:
        await directory.load(session)
    return Grant(model=row.model, scope=row.scope, scope_id=row.scope_id)


async def revoke(
    session: AsyncSession, directory: FineTunedDirectory | None, model: str, scope: str, scope_ref: str
) -> None:
    """``scope_ref``: the user's or team's id or name."""
    ref = await _scope_id(session, scope, scope_ref) if scope in ("user", "team") else scope_ref
    if not await ModelRepository(session).revoke(model, scope, ref):
        raise NotFound(f"No grant of '{model}' to {scope} '{scope_ref}'.", param="scope_id")
    if directory is not None:
        await directory.load(session)


async def _scope_id(session: AsyncSession, scope: str, ref: str) -> str:
    return (await get_user(session, ref)).id if scope == "user" else (await get_team(session, ref)).id
