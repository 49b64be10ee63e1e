from __future__ import annotations

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, TimestampMixin


class FineTunedModel(TimestampMixin, Base):
    """A model a job made through Tollgate: only its owner (and whoever an admin grants it to)
    may call it, and it is priced from its base model unless an override prices it."""

    __tablename__ = "fine_tuned_models"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(40), ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    base_model: Mapped[str] = mapped_column(String(200), nullable=False)
    job_id: Mapped[str] = mapped_column(String(64), nullable=False)


class FineTunedModelGrant(TimestampMixin, Base):
    """An admin's grant of a fine-tuned model to a user or a team. Keyed by the model's name, not a
    foreign key, so a model made outside Tollgate (before it, or in the console) can be granted."""

    __tablename__ = "fine_tuned_model_grants"

    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    scope: Mapped[str] = mapped_column(String(8), primary_key=True)
    scope_id: Mapped[str] = mapped_column(String(40), primary_key=True)
