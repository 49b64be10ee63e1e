from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.kit.db_types import JSONType, UTCDateTime
from app.models.base import Base, TimestampMixin


class ApiKey(TimestampMixin, Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True, nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    # The first characters of the plaintext, for telling keys apart in lists.
    display_prefix: Mapped[str] = mapped_column(String(32), nullable=False)
    # HMAC-SHA-256 hex of the plaintext; the plaintext itself is never stored.
    digest: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    # None means every model; otherwise the exact model names this key may call.
    allowed_models: Mapped[list[str] | None] = mapped_column(JSONType)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
