"""Support access: an admin key reaches any tenant's object, and every such reach is audited.

How a domain plugs in (files, responses, threads... and any new domain with an owner row):

1. Its repository's owner check takes an ``Owner``: ``get_owned(id, owner)`` filtering with
   ``app.kit.ownership.owned_by(Model.user_id, owner)``, so ``ANY_OWNER`` drops the condition.
2. Its service finds an object through ``reach`` (stored by Tollgate) or ``reach_upstream``
   (stored upstream, Tollgate keeps only the owner row) instead of calling ``get_owned`` itself,
   naming what the call does (``object.read`` / ``object.updated`` / ``object.deleted``)::

       found = await reach(session, principal, Target("assistant", assistant_id),
                           lambda owner: repo.get_owned(assistant_id, owner), "object.updated")
       if found is None:
           raise not_found(assistant_id)

   and commits ``session`` (the request session does; a service's own short session must be a
   ``sessionmaker.begin()`` block), which writes the audit event with whatever else it changed.
3. Its list route takes ``owner: Annotated[str, listed_owner("<kind>")]`` from
   ``app.audit.dependencies`` and lists ``owner``'s rows: the caller's own, or for an admin's
   ``?user=<id or name>`` (``extra_query={"user": ...}`` in the SDK) that user's, audited as
   ``object.listed``.

For a caller that is not an admin nothing changes: the same single owner-filtered query, the
same 404, no event. An admin reaching its own object writes no event either; only another
tenant's object (or one with no known owner) is support access. Routes that spend money
(creating runs, submitting tool outputs, chatting in a thread) keep the plain owner check:
an admin acts there as itself, with its own objects.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.repository import UserRepository
from app.api_keys.schemas import Principal
from app.audit import service as audit
from app.audit.schemas import Actor, ObjectAction
from app.errors import NotFound
from app.kit.ownership import ANY_OWNER, Owner


class OwnedRow(Protocol):
    id: Any
    user_id: Any


R = TypeVar("R", bound=OwnedRow)
Find = Callable[[Owner], Awaitable[R | None]]


@dataclass(frozen=True, slots=True)
class Target:
    """What is being reached, as the audit trail names it: ``Target("file", "file-abc")``."""

    type: str
    id: str


@dataclass(frozen=True, slots=True)
class Reached(Generic[R]):
    """An object stored upstream that the caller may reach: its owner row, or for an admin
    ``row=None`` when Tollgate has none (the object was made upstream outside Tollgate)."""

    id: str
    row: R | None

    @property
    def owner_id(self) -> str | None:
        return str(self.row.user_id) if self.row is not None else None


async def reach(
    session: AsyncSession,
    principal: Principal,
    target: Target,
    find: Find[R],
    action: ObjectAction = "object.read",
    detail: dict[str, Any] | None = None,
) -> R | None:
    """The object if ``principal`` may reach it, else None (the domain's 404).

    ``find(owner)`` is the domain's owner check. A non-admin gets ``find(its user id)``, exactly
    as before. An admin gets ``find(ANY_OWNER)``; when the object is another user's, an
    ``action`` event naming that owner is added to ``session``.
    """
    if not principal.is_admin:
        return await find(principal.user_id)
    row = await find(ANY_OWNER)
    if row is not None and row.user_id != principal.user_id:
        await audit.record(
            session, Actor.of(principal), action, target.type, target.id, owner_id=row.user_id, detail=detail
        )
    return row


async def reach_upstream(
    session: AsyncSession,
    principal: Principal,
    target: Target,
    find: Find[R],
    action: ObjectAction = "object.read",
) -> Reached[R] | None:
    """``reach`` for objects stored upstream. An admin also reaches an id Tollgate has no owner
    row for: the call goes upstream (which answers 404 if it has no such object either) and the
    event says the owner is unknown. The event is committed before the upstream call, so an
    access cannot go unrecorded, though it may record one that upstream then refused."""
    row = await reach(session, principal, target, find, action)
    if row is not None:
        return Reached(str(row.id), row)
    if not principal.is_admin:
        return None
    detail = {"owner": "unknown"}
    await audit.record(session, Actor.of(principal), action, target.type, target.id, owner_id=None, detail=detail)
    return Reached(target.id, None)


async def list_owner(session: AsyncSession, principal: Principal, kind: str, user_ref: str | None) -> str:
    """Whose ``kind`` objects a list route lists: the caller's, or for an admin the user that
    ``user_ref`` names (recorded as ``object.listed``). A non-admin naming anyone else gets the
    404 of an unknown user, whether or not that user exists."""
    if user_ref is None or user_ref in (principal.user_id, principal.user_name):
        return principal.user_id
    user = await UserRepository(session).get_by_ref(user_ref) if principal.is_admin else None
    if user is None:
        raise NotFound(f"No user '{user_ref}'.", param="user", code="user_not_found")
    if user.id != principal.user_id:
        await audit.record(session, Actor.of(principal), "object.listed", kind, None, owner_id=user.id)
    return user.id
