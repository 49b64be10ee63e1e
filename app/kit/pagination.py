"""OpenAI's cursor pagination (``limit``, ``order``, ``after``, ``before``) over (created_at, id).

Keyset, not offset: a page costs the same at the millionth row, and rows created while a client
pages through cannot shift it onto duplicates or gaps.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, Protocol, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel
from sqlalchemy import Select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from app.errors import InvalidRequest

T = TypeVar("T")


class Keyed(Protocol):
    id: Any
    created_at: Any


K = TypeVar("K", bound=Keyed)


@dataclass(frozen=True, slots=True)
class PageParams:
    limit: int = 20
    order: Literal["asc", "desc"] = "desc"
    after: str | None = None
    before: str | None = None


async def page_params(
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    order: Literal["asc", "desc"] = "desc",
    after: str | None = None,
    before: str | None = None,
) -> PageParams:
    return PageParams(limit, order, after, before)


Page = Annotated[PageParams, Depends(page_params)]


class HasId(Protocol):
    id: str


Item = TypeVar("Item", bound=HasId)


class CursorPage(BaseModel, Generic[T]):
    object: Literal["list"] = "list"
    data: list[T]
    first_id: str | None
    last_id: str | None
    has_more: bool


def cursor_page(data: list[Item], has_more: bool) -> CursorPage[Item]:
    first, last = (data[0].id, data[-1].id) if data else (None, None)
    return CursorPage(data=data, first_id=first, last_id=last, has_more=has_more)


async def keyset_page(
    session: AsyncSession,
    statement: Select[K],
    columns: tuple[InstrumentedAttribute[datetime], InstrumentedAttribute[Any]],
    page: PageParams,
    anchor: tuple[datetime, Any] | None,
) -> tuple[Sequence[K], bool]:
    """One page of ``statement``'s rows. ``anchor`` is the (created_at, id) of the ``after`` or
    ``before`` object, already checked to be the caller's."""
    created, ident = columns
    key, point = tuple_(created, ident), tuple_(*anchor) if anchor else None
    # "before" walks the other way from the anchor and turns the page round at the end.
    ascending = (page.order == "asc") != (page.before is not None)
    if point is not None:
        statement = statement.where(key > point if ascending else key < point)
    ordering = (created.asc(), ident.asc()) if ascending else (created.desc(), ident.desc())
    rows = list((await session.execute(statement.order_by(*ordering).limit(page.limit + 1))).scalars())
    has_more = len(rows) > page.limit
    rows = rows[: page.limit]
    if page.before is not None:
        rows.reverse()
    return rows, has_more


async def cursor_anchor(
    page: PageParams, lookup: Callable[[str], Awaitable[Keyed | None]], noun: str
) -> tuple[datetime, str] | None:
    """The (created_at, id) of the ``after``/``before`` object. ``lookup`` is owner-checked, so a
    cursor naming someone else's object fails exactly like an unknown one."""
    cursor = page.after or page.before
    if cursor is None:
        return None
    row = await lookup(cursor)
    if row is None:
        raise InvalidRequest(
            f"No {noun} found with id '{cursor}' to page from.", param="after" if page.after else "before"
        )
    return row.created_at, row.id
