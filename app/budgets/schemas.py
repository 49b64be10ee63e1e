from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from app.kit.periods import period_bounds
from app.kit.schemas import ReadSchema, Schema
from app.models import Budget as BudgetModel

Scope = Literal["key", "user", "team"]
Period = Literal["daily", "weekly", "monthly", "lifetime"]
MICROS = Decimal(1_000_000)


def usd_to_micros(value: Decimal) -> int:
    micros = value * MICROS
    if micros != micros.to_integral_value():
        raise ValueError("dollar amounts have at most 6 decimal places (one micro-dollar)")
    return int(micros)


def micros_to_usd(micros: int) -> str:
    return str((Decimal(micros) / MICROS).quantize(Decimal("0.000001")))


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r}; use an IANA name like 'Europe/Berlin'") from exc
    return value


class BudgetCreate(Schema):
    scope: Scope
    scope_id: str = Field(min_length=1, max_length=200, description="Key id, or user/team id or name")
    period: Period
    limit_usd: Decimal = Field(ge=0, le=10_000_000)
    soft_limit_usd: Decimal | None = Field(default=None, ge=0)
    timezone: str | None = Field(default=None, description="IANA zone for period boundaries; default from settings")

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str | None) -> str | None:
        return None if v is None else _check_timezone(v)

    @model_validator(mode="after")
    def _amounts(self) -> BudgetCreate:
        usd_to_micros(self.limit_usd)
        if self.soft_limit_usd is not None:
            usd_to_micros(self.soft_limit_usd)
            if self.soft_limit_usd > self.limit_usd:
                raise ValueError("soft_limit_usd must not exceed limit_usd")
        return self


class BudgetUpdate(Schema):
    limit_usd: Decimal | None = Field(default=None, ge=0, le=10_000_000)
    soft_limit_usd: Decimal | None = Field(default=None, ge=0)
    period: Period | None = None
    timezone: str | None = None

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str | None) -> str | None:
        return None if v is None else _check_timezone(v)

    @model_validator(mode="after")
    def _amounts(self) -> BudgetUpdate:
        for value in (self.limit_usd, self.soft_limit_usd):
            if value is not None:
                usd_to_micros(value)
        return self


class Budget(ReadSchema):
    object: Literal["budget"] = "budget"
    id: str
    scope: str
    scope_id: str
    period: str
    timezone: str
    limit_usd: str
    soft_limit_usd: str | None
    spent_usd: str
    reserved_usd: str
    remaining_usd: str
    limit_micros: int
    spent_micros: int
    reserved_micros: int
    remaining_micros: int
    soft_limit_reached: bool
    period_start: datetime
    period_end: datetime | None

    @classmethod
    def of(cls, b: BudgetModel, now: datetime) -> Budget:
        start, end = period_bounds(b.period, b.timezone, now)
        spent = b.spent_micros if b.period_start >= start else 0
        remaining = max(b.limit_micros - spent - b.reserved_micros, 0)
        soft = b.soft_limit_micros
        return cls(
            id=b.id,
            scope=b.scope,
            scope_id=b.scope_id,
            period=b.period,
            timezone=b.timezone,
            limit_usd=micros_to_usd(b.limit_micros),
            soft_limit_usd=micros_to_usd(soft) if soft is not None else None,
            spent_usd=micros_to_usd(spent),
            reserved_usd=micros_to_usd(b.reserved_micros),
            remaining_usd=micros_to_usd(remaining),
            limit_micros=b.limit_micros,
            spent_micros=spent,
            reserved_micros=b.reserved_micros,
            remaining_micros=remaining,
            soft_limit_reached=soft is not None and spent + b.reserved_micros >= soft,
            period_start=start,
            period_end=end,
        )
