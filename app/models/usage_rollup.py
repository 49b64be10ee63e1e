from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, PrimaryKeyConstraint, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from app.kit.db_types import UTCDateTime
from app.models.base import Base

# Each ledger row is summed at three grains, so a report reads the smallest one that holds every
# dimension it groups or filters by. A dimension a grain does not keep is '' in its rows.
GRAIN_ALL = 0  # key, user, team, model, endpoint, status
GRAIN_MODEL = 1  # model, endpoint, status: fleet-wide dashboards
GRAIN_USER = 2  # user, team: who spent what
GRAIN_COLUMNS: dict[int, frozenset[str]] = {
    GRAIN_ALL: frozenset({"api_key_id", "user_id", "team_id", "model", "endpoint", "status"}),
    GRAIN_MODEL: frozenset({"model", "endpoint", "status"}),
    GRAIN_USER: frozenset({"user_id", "team_id"}),
}


class UsageRollup(Base):
    """The ledger summed per UTC hour, at the grains above.

    Written in the same transaction as the ledger rows it sums (settlement batch, reaper,
    SQLite path), so it can never disagree with them. ``team_id`` is '' for "no team": a
    primary key column cannot be NULL. On PostgreSQL the table is list-partitioned by grain
    (see the migration ``partitioned_usage_and_rollup``).
    """

    __tablename__ = "usage_rollup"
    __table_args__ = (
        PrimaryKeyConstraint("grain", "hour", "api_key_id", "model", "endpoint", "status", "user_id", "team_id"),
        Index("ix_usage_rollup_user_id_hour", "grain", "user_id", "hour"),
        Index("ix_usage_rollup_team_id_hour", "grain", "team_id", "hour"),
    )

    grain: Mapped[int] = mapped_column(SmallInteger, nullable=False)
    hour: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    api_key_id: Mapped[str] = mapped_column(String(40), nullable=False)
    user_id: Mapped[str] = mapped_column(String(40), nullable=False)
    team_id: Mapped[str] = mapped_column(String(40), nullable=False)
    model: Mapped[str] = mapped_column(String(200), nullable=False)
    endpoint: Mapped[str] = mapped_column(String(64), nullable=False)
    status: Mapped[str] = mapped_column(String(32), nullable=False)
    requests: Mapped[int] = mapped_column(BigInteger, nullable=False)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, nullable=False)
    cached_tokens: Mapped[int] = mapped_column(BigInteger, nullable=False)
    completion_tokens: Mapped[int] = mapped_column(BigInteger, nullable=False)
    reasoning_tokens: Mapped[int] = mapped_column(BigInteger, nullable=False)
    cost_micros: Mapped[int] = mapped_column(BigInteger, nullable=False)
