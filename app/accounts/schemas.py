from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from app.kit.schemas import ReadSchema, Schema

Name = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]*$")


class TeamCreate(Schema):
    name: str = Name


class Team(ReadSchema):
    object: Literal["team"] = "team"
    id: str
    name: str
    created_at: datetime


class UserCreate(Schema):
    name: str = Name
    team: str | None = Field(default=None, description="Team id or name")
    role: Literal["admin", "member"] = "member"


class User(ReadSchema):
    object: Literal["user"] = "user"
    id: str
    name: str
    team_id: str | None
    role: str
    created_at: datetime
