"""The Assistants API's assistant object, as OpenAI's spec shapes it."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from app.kit.schemas import Metadata
from app.models import Assistant as AssistantModel

# Tools that need OpenAI-hosted execution; Tollgate runs threads through chat completions.
HOSTED_TOOLS = frozenset({"code_interpreter", "file_search"})


def _check_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for tool in tools:
        kind = tool.get("type")
        if kind in HOSTED_TOOLS:
            raise ValueError(
                f"'{kind}' tools need OpenAI-hosted execution, which Tollgate does not provide; use function tools"
            )
        if kind != "function":
            raise ValueError(f"unknown tool type {kind!r}")
        function = tool.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
            raise ValueError("a function tool needs function.name")
    return tools


Tools = Annotated[list[dict[str, Any]], Field(max_length=128), AfterValidator(_check_tools)]


class AssistantFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=256)
    description: str | None = Field(default=None, max_length=512)
    instructions: str | None = Field(default=None, max_length=256_000)
    tools: Tools = Field(default_factory=list)
    tool_resources: dict[str, Any] | None = None
    metadata: Metadata | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    response_format: Any = None
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = None


class AssistantCreate(AssistantFields):
    model: str = Field(min_length=1, max_length=200)


class AssistantUpdate(AssistantFields):
    model: str | None = Field(default=None, min_length=1, max_length=200)


class Assistant(BaseModel):
    id: str
    object: Literal["assistant"] = "assistant"
    created_at: int
    name: str | None
    description: str | None
    model: str
    instructions: str | None
    tools: list[dict[str, Any]]
    tool_resources: dict[str, Any] | None
    metadata: dict[str, str]
    temperature: float | None
    top_p: float | None
    response_format: Any
    reasoning_effort: str | None

    @classmethod
    def of(cls, row: AssistantModel) -> Assistant:
        return cls(
            id=row.id,
            created_at=int(row.created_at.timestamp()),
            name=row.name,
            description=row.description,
            model=row.model,
            instructions=row.instructions,
            tools=row.tools,
            tool_resources=row.tool_resources,
            metadata=row.meta,
            temperature=row.temperature,
            top_p=row.top_p,
            response_format=row.response_format,
            reasoning_effort=row.reasoning_effort,
        )
