"""Key service on a rolled-back PostgreSQL session."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import service as accounts
from app.accounts.schemas import UserCreate
from app.api_keys import service
from app.api_keys.repository import ApiKeyRepository
from app.api_keys.schemas import ApiKeyCreate, Principal
from app.audit.schemas import CLI
from app.kit.crypto import hash_api_key
from app.models import ApiKey

SECRET = b"unit-test-secret"


async def test_created_key_is_stored_only_as_its_hmac(db_session: AsyncSession) -> None:
    await accounts.create_user(db_session, UserCreate(name="dora"), CLI)
    key, token = await service.create_key(db_session, SECRET, ApiKeyCreate(user="dora"), CLI)
    stored = (await db_session.execute(select(ApiKey).where(ApiKey.id == key.id))).scalar_one()
    assert stored.digest == hash_api_key(token, SECRET)
    assert token not in str(vars(stored))
    assert len(token) == len("tg-") + 43  # 256 random bits, base64url


async def test_env_admin_key_is_idempotent_and_rotation_retires_the_old_one(db_session: AsyncSession) -> None:
    assert await service.ensure_admin(db_session, SECRET, "tg-env-one-0000000000") is None
    assert await service.ensure_admin(db_session, SECRET, "tg-env-one-0000000000") is None
    repo = ApiKeyRepository(db_session)
    now = datetime.now(UTC)
    assert await repo.get_active_with_user(hash_api_key("tg-env-one-0000000000", SECRET), now) is not None

    await service.ensure_admin(db_session, SECRET, "tg-env-two-0000000000")
    assert await repo.get_active_with_user(hash_api_key("tg-env-one-0000000000", SECRET), now) is None
    assert await repo.get_active_with_user(hash_api_key("tg-env-two-0000000000", SECRET), now) is not None


async def test_bootstrap_key_is_generated_only_when_no_admin_key_exists(db_session: AsyncSession) -> None:
    await db_session.execute(delete(ApiKey))  # a fresh install, inside this test's rolled-back transaction
    first = await service.ensure_admin(db_session, SECRET, None)
    assert first is not None and first.startswith("tg-")
    assert await service.ensure_admin(db_session, SECRET, None) is None


async def test_revoking_twice_keeps_the_first_timestamp(db_session: AsyncSession) -> None:
    await accounts.create_user(db_session, UserCreate(name="erin"), CLI)
    key, _ = await service.create_key(db_session, SECRET, ApiKeyCreate(user="erin"), CLI)
    first = (await service.revoke_key(db_session, key.id, CLI)).revoked_at
    assert (await service.revoke_key(db_session, key.id, CLI)).revoked_at == first


NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", NOW + timedelta(days=30)),
        ("12h", NOW + timedelta(hours=12)),
        ("90m", NOW + timedelta(minutes=90)),
        ("2w", NOW + timedelta(weeks=2)),
        ("2027-01-01T00:00:00Z", datetime(2027, 1, 1, tzinfo=UTC)),
    ],
)
def test_parse_expiry(text: str, expected: datetime) -> None:
    assert service.parse_expiry(text, NOW) == expected


@pytest.mark.parametrize("text", ["soon", "2027-01-01T00:00:00", "d30", ""])
def test_parse_expiry_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError, match=r".+"):
        service.parse_expiry(text, NOW)


async def test_concurrent_cache_misses_share_one_lookup(db_session: AsyncSession) -> None:
    await accounts.create_user(db_session, UserCreate(name="gina"), CLI)
    key, token = await service.create_key(db_session, SECRET, ApiKeyCreate(user="gina"), CLI)
    user = await accounts.get_user(db_session, "gina")
    authenticator = service.Authenticator(None, SECRET, ttl_s=1.0)  # type: ignore[arg-type]
    lookups = 0

    async def load(_: str) -> Principal:
        nonlocal lookups
        lookups += 1
        await asyncio.sleep(0.05)
        return service.principal_of(key, user)

    authenticator._load = load  # type: ignore[method-assign,assignment]
    principals = await asyncio.gather(*(authenticator.authenticate(token) for _ in range(50)))
    assert {p.key_id for p in principals} == {key.id}
    assert lookups == 1
