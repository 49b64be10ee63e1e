from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.responses.service import Responses


async def get_responses(request: Request) -> Responses:
    responses: Responses = request.app.state.responses
    return responses


ResponsesDep = Annotated[Responses, Depends(get_responses)]
