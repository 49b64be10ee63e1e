"""``GET /metrics``: Prometheus's text format, summed over every worker process."""

from __future__ import annotations

import anyio
from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from app.metrics.dependencies import Scraper
from app.metrics.multiprocess import scrape_registry

router = APIRouter(tags=["metrics"])


@router.get("/metrics", include_in_schema=False)
async def metrics(_: Scraper) -> Response:
    # Off the event loop: reading every worker's files takes a few milliseconds.
    content = await anyio.to_thread.run_sync(generate_latest, scrape_registry())
    return Response(content, media_type=CONTENT_TYPE_LATEST)
