from fastapi import APIRouter

from app.accounts.endpoints import router as accounts_router
from app.api_keys.endpoints import me_router
from app.api_keys.endpoints import router as keys_router
from app.budgets.endpoints import router as budgets_router
from app.gateway.endpoints import router as gateway_router
from app.ratelimits.endpoints import router as ratelimits_router

api_router = APIRouter()
api_router.include_router(gateway_router)
api_router.include_router(me_router)
api_router.include_router(accounts_router)
api_router.include_router(keys_router)
api_router.include_router(budgets_router)
api_router.include_router(ratelimits_router)
