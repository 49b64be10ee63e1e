from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from app.api_keys.dependencies import get_principal
from app.config import Settings
from app.errors import PermissionDenied


async def scraper(request: Request) -> None:
    """``/metrics`` names teams and models and shows their spend, so it is never open: it takes
    the scrape token (``TOLLGATE_METRICS_TOKEN``, which can read metrics and nothing else) or an
    admin key."""
    settings: Settings = request.app.state.settings
    token = settings.metrics.token
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    secret = token.get_secret_value().encode() if token is not None else None
    if secret is not None and scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), secret):
        return
    principal = await get_principal(request)
    if not principal.is_admin:
        raise PermissionDenied("/metrics needs the scrape token or an admin key.")


Scraper = Annotated[None, Depends(scraper)]
