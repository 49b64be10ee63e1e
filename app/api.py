from fastapi import APIRouter
from fastapi.routing import APIRoute

from app.accounts.endpoints import router as accounts_router
from app.api_keys.endpoints import me_router
from app.api_keys.endpoints import router as keys_router
from app.assistants.endpoints import router as assistants_router
from app.audit.endpoints import router as audit_router
from app.batches.endpoints import router as batches_router
from app.budgets.endpoints import router as budgets_router
from app.conversations.endpoints import router as conversations_router
from app.files.endpoints import router as files_router
from app.fine_tuning.endpoints import admin_router as fine_tuned_models_router
from app.fine_tuning.endpoints import router as fine_tuning_router
from app.gateway.endpoints import hot_routes
from app.gateway.endpoints import router as gateway_router
from app.gateway.unserved import router as unserved_router
from app.media.endpoints import router as media_router
from app.metrics.endpoints import router as metrics_router
from app.ratelimits.endpoints import router as ratelimits_router
from app.responses.endpoints import create_response
from app.responses.endpoints import router as responses_router
from app.runs.endpoints import create_and_run_router
from app.runs.endpoints import router as runs_router
from app.threads.endpoints import admin_router as threads_admin_router
from app.threads.endpoints import router as threads_router
from app.uploads.endpoints import router as uploads_router
from app.upstreams.endpoints import router as upstreams_router
from app.usage.endpoints import admin_router as usage_admin_router
from app.usage.endpoints import router as usage_router
from app.vector_stores.endpoints import router as vector_stores_router

# Included into the app one by one, the OpenAI routes first: FastAPI walks included routers on
# every request, so a flat, hot-first list is measurably cheaper than one nested router. The
# guard for routes that must never be served comes before all of them.
routers: list[APIRouter] = [
    unserved_router,
    gateway_router,
    responses_router,
    conversations_router,
    me_router,
    usage_router,
    media_router,
    assistants_router,
    create_and_run_router,
    threads_router,
    runs_router,
    files_router,
    uploads_router,
    vector_stores_router,
    batches_router,
    fine_tuning_router,
    accounts_router,
    threads_admin_router,
    keys_router,
    budgets_router,
    ratelimits_router,
    upstreams_router,
    audit_router,
    metrics_router,
    fine_tuned_models_router,
    usage_admin_router,
]


def metered_routes() -> list[APIRoute]:
    """What the fast lane serves: the gateway's metered calls and Responses' create. Their
    routers must be included without dependencies of their own, which the lane would skip."""
    creates = [r for r in responses_router.routes if isinstance(r, APIRoute) and r.endpoint is create_response]
    return [*hot_routes(), *creates]
