from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.kit.db_types import UTCDateTime
from app.models.base import Base


class UsageRequestId(Base):
    """Every request id the ledger holds, once: what keeps a request to one ledger row.

    The partitioned ledger cannot have a unique ``request_id`` (PostgreSQL wants the partition
    key in every unique constraint), and its writers are many: the settle batch, the reaper, a
    batch's or a fine-tuning job's settlement, the storage meter, each possibly on several
    replicas and retried. Whoever registers the id writes the row; everyone else writes
    nothing. Narrow and unpartitioned; retention deletes the ids of the months it drops.
    """

    __tablename__ = "usage_request_ids"
    __table_args__ = (Index("ix_usage_request_ids_created_at", "created_at"),)

    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
