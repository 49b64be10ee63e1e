"""Issuing, revoking and authenticating keys."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.accounts import service as accounts
from app.accounts.repository import UserRepository
from app.api_keys.repository import ApiKeyRepository
from app.api_keys.schemas import ApiKeyCreate, Principal
from app.audit import service as audit
from app.audit.schemas import SYSTEM, Actor
from app.config import Settings
from app.db import DB_ERRORS
from app.errors import NotFound, ServiceUnavailable, Unauthorized
from app.kit.cache import TtlCache
from app.kit.crypto import display_prefix, generate_api_key, hash_api_key, load_or_create_secret, new_id
from app.kit.db_types import utcnow
from app.models import ApiKey, User

KEY_PREFIX = "tg-"
BOOTSTRAP_ADMIN = "admin"
ENV_ADMIN_KEY_NAME = "TOLLGATE_ADMIN_KEY"
LAST_USED_GRANULARITY = timedelta(minutes=1)


def resolve_key_secret(settings: Settings) -> bytes:
    if settings.keys.secret_key is not None:
        return settings.keys.secret_key.get_secret_value().encode()
    return load_or_create_secret(Path(settings.gateway.data_dir) / "secret.key")


async def create_key(session: AsyncSession, secret: bytes, data: ApiKeyCreate, actor: Actor) -> tuple[ApiKey, str]:
    """Returns the stored key and its plaintext; the plaintext exists only in this return value."""
    user = await accounts.get_user(session, data.user)
    token = generate_api_key(KEY_PREFIX)
    key = ApiKey(
        id=new_id("key"),
        user_id=user.id,
        name=data.name,
        display_prefix=display_prefix(token, KEY_PREFIX),
        digest=hash_api_key(token, secret),
        allowed_models=data.models,
        expires_at=data.expires_at,
    )
    await ApiKeyRepository(session).create(key)
    await record_key_created(session, actor, key)
    return key, token


async def record_key_created(session: AsyncSession, actor: Actor, key: ApiKey) -> None:
    """The key's model access is its grant; its secret and digest are never part of the event."""
    detail = {
        "name": key.name,
        "display_prefix": key.display_prefix,
        "allowed_models": key.allowed_models,
        "expires_at": key.expires_at.isoformat() if key.expires_at else None,
    }
    await audit.record(session, actor, "key.created", "api_key", key.id, owner_id=key.user_id, detail=detail)


async def list_keys(session: AsyncSession, user: str | None = None) -> Sequence[ApiKey]:
    user_id = (await accounts.get_user(session, user)).id if user else None
    return await ApiKeyRepository(session).list_keys(user_id)


async def get_key(session: AsyncSession, key_id: str) -> ApiKey:
    key = await ApiKeyRepository(session).get_by_id(key_id)
    if key is None:
        raise NotFound(f"No API key '{key_id}'.", param="key_id", code="key_not_found")
    return key


async def revoke_key(session: AsyncSession, key_id: str, actor: Actor) -> ApiKey:
    """Idempotent: revoking a revoked key changes nothing, so it records nothing."""
    key = await get_key(session, key_id)
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        await session.flush()
        await audit.record(session, actor, "key.revoked", "api_key", key.id, owner_id=key.user_id)
    return key


async def ensure_admin(session: AsyncSession, secret: bytes, env_admin_key: str | None) -> str | None:
    """Makes sure an admin can get in. Returns a new plaintext key only when one was generated.

    With ``TOLLGATE_ADMIN_KEY`` set, that key is registered (idempotently) for the bootstrap
    admin. Otherwise a key is generated on the very first start only.
    """
    keys = ApiKeyRepository(session)
    if env_admin_key is not None:
        admin = await _bootstrap_admin(session)
        digest = hash_api_key(env_admin_key, secret)
        if not await keys.exists_digest(digest):
            prefix = display_prefix(env_admin_key, KEY_PREFIX)
            key = ApiKey(id=new_id("key"), user_id=admin.id, name=ENV_ADMIN_KEY_NAME)
            key.display_prefix, key.digest = prefix, digest
            await keys.create(key)
            await record_key_created(session, SYSTEM, key)
        # Rotating the environment key must retire the one it replaces.
        for key_id in await keys.revoke_named_except(admin.id, ENV_ADMIN_KEY_NAME, digest, utcnow()):
            await audit.record(session, SYSTEM, "key.revoked", "api_key", key_id, owner_id=admin.id)
        return None
    if await keys.count_admin_keys() > 0:
        return None
    admin = await _bootstrap_admin(session)
    _, token = await create_key(session, secret, ApiKeyCreate(user=admin.id, name="bootstrap"), SYSTEM)
    return token


async def _bootstrap_admin(session: AsyncSession) -> User:
    users = UserRepository(session)
    admin = await users.get_by_ref(BOOTSTRAP_ADMIN)
    if admin is None:
        admin = await users.create(User(id=new_id("user"), name=BOOTSTRAP_ADMIN, role="admin"))
        await accounts.record_user_created(session, SYSTEM, admin)
    return admin


class Authenticator:
    """Resolves bearer tokens to principals through a short-lived cache.

    The TTL bounds how long a revocation made on another replica can go unnoticed; a
    revocation made through this process drops the entry at once. Concurrent misses for the
    same key share one lookup: when the entry of a busy key expires, hundreds of requests
    must not each take a database connection to ask the same question.
    """

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], secret: bytes, ttl_s: float) -> None:
        self._sessionmaker = sessionmaker
        self._secret = secret
        self._principals: TtlCache[str, Principal | None] = TtlCache(ttl_s)

    async def authenticate(self, token: str) -> Principal:
        digest = hash_api_key(token, self._secret)
        try:
            principal = await self._principals.get(digest, self._load)
        except DB_ERRORS as exc:
            raise ServiceUnavailable("Tollgate cannot verify API keys right now. Retry shortly.") from exc
        if principal is None or (principal.expires_at is not None and principal.expires_at <= utcnow()):
            raise Unauthorized()
        return principal

    def invalidate(self) -> None:
        self._principals.clear()

    async def _load(self, digest: str) -> Principal | None:
        async with self._sessionmaker() as session:
            repo = ApiKeyRepository(session)
            now = utcnow()
            found = await repo.get_active_with_user(digest, now)
            if found is None:
                return None
            key, user = found
            await repo.touch_last_used(key.id, now, LAST_USED_GRANULARITY)
            await session.commit()
        return principal_of(key, user)


def principal_of(key: ApiKey, user: User) -> Principal:
    return Principal(
        key_id=key.id,
        key_name=key.name,
        user_id=user.id,
        user_name=user.name,
        team_id=user.team_id,
        role=user.role,
        allowed_models=frozenset(key.allowed_models) if key.allowed_models is not None else None,
        expires_at=key.expires_at,
    )


def parse_expiry(value: str, now: datetime | None = None) -> datetime:
    """'30d', '12h', '90m', '2w' or an ISO-8601 timestamp with offset, as the CLI accepts them."""
    now = now or utcnow()
    units = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
    if value[:-1].isdigit() and value[-1:] in units:
        return now + timedelta(**{units[value[-1]]: int(value[:-1])})
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("a timestamp needs a time zone offset, e.g. 2026-12-31T00:00:00Z")
    return parsed


async def resolve_scope_id(session: AsyncSession, scope: str, ref: str) -> str:
    """The id behind a budget's or a limit's owner reference: a key id, or a user/team id or name."""
    if scope == "key":
        return (await get_key(session, ref)).id
    if scope == "user":
        return (await accounts.get_user(session, ref)).id
    return (await accounts.get_team(session, ref)).id


async def scope_owner(session: AsyncSession, scope: str, scope_id: str) -> str | None:
    """The user a budget or a limit bears on, as the audit trail records it (a team's: nobody's)."""
    if scope == "key":
        return (await get_key(session, scope_id)).user_id
    return scope_id if scope == "user" else None
