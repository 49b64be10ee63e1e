from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.vector_stores.service import VectorStores


async def get_vector_stores(request: Request) -> VectorStores:
    stores: VectorStores = request.app.state.vector_stores
    return stores


VectorStoresDep = Annotated[VectorStores, Depends(get_vector_stores)]
