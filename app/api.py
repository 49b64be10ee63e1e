from fastapi import APIRouter

from app.accounts.endpoints import router as accounts_router
from app.api_keys.endpoints import me_router
from app.api_keys.endpoints import router as keys_router
from app.gateway.endpoints import router as gateway_router

api_router = APIRouter()
api_router.include_router(gateway_router)
api_router.include_router(me_router)
api_router.include_router(accounts_router)
api_router.include_router(keys_router)
