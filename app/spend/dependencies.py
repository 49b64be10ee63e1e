from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.spend.service import SpendService


async def settled(request: Request) -> None:
    """For routes that read spend: settlements this process has queued are written first, so a
    client sees every request it was already answered for."""
    spend: SpendService = request.app.state.spend
    await spend.flushed()


Settled = Annotated[None, Depends(settled)]
