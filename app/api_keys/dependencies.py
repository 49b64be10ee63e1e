from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.api_keys.schemas import Principal
from app.api_keys.service import Authenticator
from app.errors import PermissionDenied, Unauthorized


async def get_principal(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'.")
    authenticator: Authenticator = request.app.state.authenticator
    principal = await authenticator.authenticate(token.strip())
    request.state.principal = principal
    return principal


async def get_admin(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
    if not principal.is_admin:
        raise PermissionDenied("This route needs an admin key.")
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
AdminPrincipal = Annotated[Principal, Depends(get_admin)]
