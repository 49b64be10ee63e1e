from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.kit.db_types import JSONType, UTCDateTime, utcnow
from app.models.base import Base


class UpstreamTargetRow(Base):
    """An upstream added or changed by an admin at run time; it overrides a configured one of the
    same name. ``enabled`` false takes a configured upstream out without a restart."""

    __tablename__ = "upstream_targets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    base_url: Mapped[str] = mapped_column(String(500), nullable=False)
    # Fernet token under a key derived from TOLLGATE_SECRET_KEY: a database dump alone does not
    # give away upstream keys.
    api_key_sealed: Mapped[str] = mapped_column(Text, nullable=False)
    weight: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    models: Mapped[list[Any]] = mapped_column(JSONType, nullable=False, default=list)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
