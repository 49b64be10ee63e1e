"""The fine-tuning requests Tollgate reads (the rest of a body is forwarded as sent), and what it
records of upstream's job objects."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.errors import InvalidRequest
from app.kit.schemas import Schema

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=200)
    training_file: str = Field(min_length=1, max_length=100)
    validation_file: str | None = Field(default=None, max_length=100)
    hyperparameters: dict[str, Any] | None = None
    method: dict[str, Any] | None = None

    def n_epochs(self) -> int | Literal["auto"]:
        """The client's epochs, from ``method.supervised.hyperparameters`` or the older top-level
        ``hyperparameters``; ``auto`` when it set none."""
        method = self.method or {}
        kind = method.get("type", "supervised")
        if kind != "supervised":
            raise InvalidRequest(
                f"Tollgate serves supervised fine-tuning only, not '{str(kind)[:32]}': its files are the ones it "
                "checks and can price before the job runs.",
                param="method.type",
                code="unsupported_method",
            )
        supervised = method.get("supervised") or {}
        nested = supervised.get("hyperparameters") if isinstance(supervised, dict) else None
        for source, param in ((nested, "method.supervised.hyperparameters"), (self.hyperparameters, "hyperparameters")):
            value = source.get("n_epochs", "auto") if isinstance(source, dict) else "auto"
            if value == "auto":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 50:
                raise InvalidRequest("'n_epochs' must be 'auto' or an integer from 1 to 50.", param=f"{param}.n_epochs")
            return value
        return "auto"


def parse_create(body: dict[str, Any]) -> JobCreate:
    try:
        return JobCreate.model_validate(body)
    except ValidationError as exc:
        error = exc.errors()[0]
        param = ".".join(str(p) for p in error["loc"]) or None
        raise InvalidRequest(f"Invalid value for '{param}': {error['msg']}.", param=param) from None


class UpstreamJob(BaseModel):
    """The fields of upstream's job object that Tollgate acts on; others pass through."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1, max_length=64)
    status: str = Field(max_length=32)
    trained_tokens: int | None = Field(default=None, ge=0)
    fine_tuned_model: str | None = Field(default=None, max_length=200)
    result_files: list[str] = Field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL


class GrantCreate(Schema):
    scope: Literal["user", "team"]
    scope_id: str = Field(min_length=1, max_length=200, description="User or team id or name")


class Grant(Schema):
    object: Literal["fine_tuned_model.grant"] = "fine_tuned_model.grant"
    model: str
    scope: str
    scope_id: str


class FineTunedModelView(Schema):
    object: Literal["fine_tuned_model"] = "fine_tuned_model"
    id: str
    owner: str | None
    base_model: str | None
    job_id: str | None
    users: list[str]
    teams: list[str]
