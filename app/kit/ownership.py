"""The owner condition of an owner check, with an explicit way to ask for any owner.

Every owner check is ``Repository.get_owned(id, owner)``. ``owner`` is a user id, or
``ANY_OWNER`` for an admin's support lookup (``app.audit.support.reach``). A sentinel and not
``None``, so that an absent user id can never widen a lookup to every tenant by accident.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Literal

from sqlalchemy import ColumnElement, true
from sqlalchemy.orm import InstrumentedAttribute


class _AnyOwner(Enum):
    ANY = "any"


ANY_OWNER = _AnyOwner.ANY
Owner = str | Literal[_AnyOwner.ANY]


def owned_by(column: InstrumentedAttribute[Any], owner: Owner) -> ColumnElement[bool]:
    """``column == owner``; no condition at all for ``ANY_OWNER``."""
    return true() if owner is ANY_OWNER else column == owner
