from fastapi import APIRouter

from app.accounts.endpoints import router as accounts_router
from app.api_keys.endpoints import me_router
from app.api_keys.endpoints import router as keys_router
from app.budgets.endpoints import router as budgets_router
from app.gateway.endpoints import router as gateway_router
from app.ratelimits.endpoints import router as ratelimits_router

# Included into the app one by one, the OpenAI routes first: FastAPI walks included routers on
# every request, so a flat, hot-first list is measurably cheaper than one nested router.
routers: list[APIRouter] = [
    gateway_router,
    me_router,
    accounts_router,
    keys_router,
    budgets_router,
    ratelimits_router,
]
