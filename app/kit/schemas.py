from __future__ import annotations

from typing import Annotated, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict

T = TypeVar("T")


class Schema(BaseModel):
    model_config = ConfigDict(from_attributes=True, extra="forbid")


class ReadSchema(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Deleted(BaseModel):
    """OpenAI's answer to a delete: ``{"id", "object": "<kind>.deleted", "deleted": true}``."""

    id: str
    object: str
    deleted: bool = True


class ListResponse(BaseModel, Generic[T]):
    """OpenAI's list envelope."""

    object: Literal["list"] = "list"
    data: list[T]


def _check_metadata(value: dict[str, str]) -> dict[str, str]:
    if len(value) > 16:
        raise ValueError("metadata can hold at most 16 key-value pairs")
    for key, item in value.items():
        if len(key) > 64:
            raise ValueError(f"metadata key '{key[:64]}...' is longer than 64 characters")
        if len(item) > 512:
            raise ValueError(f"metadata value of '{key}' is longer than 512 characters")
    return value


# OpenAI's limits on object metadata: 16 pairs, keys up to 64 characters, values up to 512.
Metadata = Annotated[dict[str, str], AfterValidator(_check_metadata)]
