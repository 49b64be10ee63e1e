"""Routes Tollgate refuses by name, ahead of every other route.

OpenAI's admin API (``/v1/organization/...``: API keys, users, projects, billing) acts on the
whole upstream organization. Every tenant's call goes out with the one shared upstream key, so
no tenant may reach it, whatever routes are added later: this guard is matched first and
answers exactly as an unknown route does. Other unserved ``/v1`` paths need no guard: with no
raw pass-through, they fall through to the same 404.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from app.errors import unknown_url

router = APIRouter(include_in_schema=False)

_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


@router.api_route("/v1/organization{rest:path}", methods=_METHODS)
async def organization_api(request: Request) -> None:
    raise unknown_url(request)
