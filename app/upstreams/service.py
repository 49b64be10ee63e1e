"""The upstreams in effect: those configured in settings, overridden by rows admins write at run
time. Every replica re-reads the rows every ``upstreams_refresh_s``; the replica that took the
change applies it at once."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from pydantic import SecretStr, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.audit import service as audit
from app.audit.schemas import Actor
from app.config import UpstreamTarget
from app.errors import InvalidRequest, NotFound
from app.gateway.upstream import Upstream
from app.kit.crypto import Sealer, SealError
from app.kit.db_types import utcnow
from app.models import UpstreamTargetRow
from app.upstreams.repository import UpstreamRepository
from app.upstreams.schemas import Upstream as UpstreamView
from app.upstreams.schemas import UpstreamPut

log = logging.getLogger("tollgate.upstreams")


@dataclass(frozen=True, slots=True)
class Effective:
    target: UpstreamTarget
    enabled: bool
    source: str


class UpstreamDirectory:
    def __init__(
        self,
        upstream: Upstream,
        configured: Sequence[UpstreamTarget],
        sessionmaker: async_sessionmaker[AsyncSession],
        sealer: Sealer,
    ) -> None:
        self.upstream = upstream
        self.configured = {t.name: t for t in configured}
        self.sessionmaker = sessionmaker
        self.sealer = sealer

    async def refresh(self) -> None:
        async with self.sessionmaker() as session:
            await self.apply(session)

    async def apply(self, session: AsyncSession) -> list[Effective]:
        """Reads the rows (the caller's own changes included) and puts them in effect here."""
        effective = self._merge(await UpstreamRepository(session).all())
        self.upstream.set_targets([e.target for e in effective if e.enabled])
        return effective

    async def views(self, session: AsyncSession) -> list[UpstreamView]:
        return [_view(e) for e in await self.apply(session)]

    async def put(self, session: AsyncSession, name: str, data: UpstreamPut, actor: Actor) -> UpstreamView:
        repo = UpstreamRepository(session)
        row = await repo.get_by_id(name)
        if row is None:
            row = UpstreamTargetRow(name=name, api_key_sealed="")
            session.add(row)
        if data.api_key is not None:
            row.api_key_sealed = self.sealer.seal(data.api_key.get_secret_value())
        row.base_url, row.weight, row.models = data.base_url, data.weight, data.models
        row.enabled, row.updated_at = data.enabled, utcnow()
        try:
            UpstreamTarget(name=name, base_url=data.base_url, weight=data.weight, models=data.models)
        except ValidationError as exc:
            raise InvalidRequest(f"Invalid upstream: {exc.errors()[0]['msg']}.", param="name") from None
        await session.flush()
        # The key itself never: only whether this change set one.
        detail = {
            "base_url": _without_credentials(data.base_url),
            "weight": data.weight,
            "models": data.models,
            "enabled": data.enabled,
            "api_key_set": data.api_key is not None,
        }
        await audit.record(session, actor, "upstream.changed", "upstream", name, detail=detail)
        return next(_view(e) for e in await self.apply(session) if e.target.name == name)

    async def delete(self, session: AsyncSession, name: str, actor: Actor) -> None:
        """Removes an admin's change: a configured upstream of that name is back as configured."""
        repo = UpstreamRepository(session)
        row = await repo.get_by_id(name)
        if row is None:
            raise NotFound(f"No upstream changed by an admin is named '{name}'.", param="name")
        await repo.delete(row)
        await audit.record(session, actor, "upstream.deleted", "upstream", name)
        await self.apply(session)

    def _merge(self, rows: Sequence[UpstreamTargetRow]) -> list[Effective]:
        merged = {name: Effective(t, True, "settings") for name, t in self.configured.items()}
        for row in rows:
            configured = self.configured.get(row.name)
            key = self._unseal(row) if row.api_key_sealed else None
            if key is None:
                key = configured.api_key if configured is not None else SecretStr("")
            target = UpstreamTarget(
                name=row.name, base_url=row.base_url, api_key=key, weight=row.weight, models=row.models
            )
            merged[row.name] = Effective(target, row.enabled, "admin")
        return list(merged.values())

    def _unseal(self, row: UpstreamTargetRow) -> SecretStr | None:
        try:
            return SecretStr(self.sealer.unseal(row.api_key_sealed))
        except SealError:
            # Sealed under another TOLLGATE_SECRET_KEY: unusable, and said so rather than sent.
            log.error("upstream %s: its stored key cannot be decrypted with this secret key", row.name)
            return None


def _without_credentials(url: str) -> str:
    """A base URL may carry a password (``https://user:secret@host``); the trail keeps the host."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=(parts.hostname or "") + (f":{parts.port}" if parts.port else "")))


def _view(e: Effective) -> UpstreamView:
    key = e.target.api_key.get_secret_value()
    return UpstreamView(
        name=e.target.name,
        base_url=e.target.base_url,
        weight=e.target.weight,
        models=e.target.models,
        enabled=e.enabled,
        source="admin" if e.source == "admin" else "settings",
        api_key_hint=f"...{key[-4:]}" if len(key) >= 12 else None,
    )
