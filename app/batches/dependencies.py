from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.batches.service import Batches


async def get_batches(request: Request) -> Batches:
    batches: Batches = request.app.state.batches
    return batches


BatchesDep = Annotated[Batches, Depends(get_batches)]
