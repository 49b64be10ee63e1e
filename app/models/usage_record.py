from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.kit.db_types import BigIntPK, UTCDateTime, utcnow
from app.models.base import Base

# Statuses a request can end in; the ledger records every upstream call, failed ones too.
STATUS_OK = "ok"
STATUS_UPSTREAM_ERROR = "upstream_error"
STATUS_CLIENT_DISCONNECTED = "client_disconnected"
STATUS_STREAM_ERROR = "stream_error"
# The request never settled (crash, DB down): the reaper charged its reservation.
STATUS_LEASE_EXPIRED = "lease_expired"

# What ``units`` counts, for calls billed by the piece rather than (only) by the token.
UNIT_IMAGE = "image"
UNIT_SECOND = "second"  # of audio, rounded up
UNIT_CHARACTER = "character"
# Vector store storage: bytes stored, for one day (OpenAI bills it per GB-day).
UNIT_BYTE_DAY = "byte_day"
# Fine-tuning: trained tokens (epochs included), which outgrow the int32 token columns.
UNIT_TOKEN = "token"  # noqa: S105 - a unit name, not a secret

SOURCE_UPSTREAM = "upstream"
SOURCE_ESTIMATED = "estimated"


class UsageRecord(Base):
    """One row per upstream call: append-only and narrow.

    No foreign keys: the ledger must outlive anything it points at, and an append-only hot
    table should not pay for FK checks on every insert.

    On PostgreSQL the table is range-partitioned by month on ``created_at`` (see the migration
    ``partitioned_usage_and_rollup``), so its primary key is (id, created_at) there and every
    unique constraint carries ``created_at``. A request is still written once, by whoever
    registers its id in ``usage_request_ids`` in the same transaction (``UsageRequestId``).
    """

    __tablename__ = "usage_records"
    __table_args__ = (
        UniqueConstraint("request_id", "created_at"),
        Index("ix_usage_records_api_key_id_created_at", "api_key_id", "created_at"),
        Index("ix_usage_records_user_id_created_at", "user_id", "created_at"),
        Index("ix_usage_records_team_id_created_at", "team_id", "created_at"),
        Index("ix_usage_records_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(64), nullable=False)
    api_key_id: Mapped[str] = mapped_column(String(40), nullable=False)
    user_id: Mapped[str] = mapped_column(String(40), nullable=False)
    team_id: Mapped[str | None] = mapped_column(String(40))
    endpoint: Mapped[str] = mapped_column(String(64), nullable=False)
    model: Mapped[str] = mapped_column(String(200), nullable=False)
    prompt_tokens: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    cached_tokens: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    reasoning_tokens: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    cost_micros: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    # Calls billed by the piece (images, seconds of audio, characters of speech input) record
    # the count here and its unit in ``unit``; both are NULL for calls billed only by tokens.
    # Token counts a media call reports (gpt-image-1, gpt-4o-transcribe) stay in the token columns.
    unit: Mapped[str | None] = mapped_column(String(16))
    units: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(32), nullable=False)
    http_status: Mapped[int] = mapped_column(Integer, nullable=False)
    latency_ms: Mapped[int] = mapped_column(Integer, nullable=False)
    upstream_request_id: Mapped[str | None] = mapped_column(String(200))
    # Which configured upstream answered (see TOLLGATE_UPSTREAMS); None when none did.
    upstream: Mapped[str | None] = mapped_column(String(64))
    usage_source: Mapped[str] = mapped_column(String(16), nullable=False)
    error_code: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
