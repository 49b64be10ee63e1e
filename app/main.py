"""The application factory. Resources are built in the lifespan, never at import."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from app.api import metered_routes, routers
from app.api_keys.service import Authenticator, ensure_admin, resolve_key_secret
from app.batches.service import Batches
from app.batches.settlement import BatchSettler
from app.config import Settings, get_settings
from app.conversations.service import Conversations
from app.db import create_engine, create_money_pool, create_sessionmaker
from app.errors import install_error_handlers
from app.files.service import FileService
from app.fine_tuning.directory import FineTunedDirectory
from app.fine_tuning.service import FineTuning
from app.gateway.catalog import ModelCatalog
from app.gateway.metering import Meter
from app.gateway.service import Gateway
from app.gateway.upstream import Upstream, default_target
from app.kit import tokens
from app.kit.crypto import Sealer
from app.kit.fast_lane import FastLane
from app.kit.form_relay import FORM_OVERHEAD_BYTES
from app.kit.logging import configure_logging, flush_logs
from app.kit.middleware import BodyLimitMiddleware, RequestContextMiddleware
from app.kit.openapi import document_errors
from app.kit.runtime import freeze_startup_heap
from app.kit.tasks import every
from app.kit.text import refuse_unstorable_body
from app.media.audio import AudioCalls
from app.media.endpoints import UPLOAD_PATHS
from app.media.images import ImageCalls
from app.media.pricing import MediaPrices
from app.metrics.middleware import MetricsMiddleware
from app.metrics.multiprocess import forget_dead_workers
from app.ratelimits.limiter import create_rate_limiter
from app.ratelimits.service import LimitsCache
from app.responses.service import Responses
from app.runs.service import RunExecutor
from app.spend.repository import MoneyFunctions
from app.spend.service import SpendService
from app.threads.service import ThreadChats
from app.uploads.service import UploadService
from app.upstreams.service import UpstreamDirectory
from app.usage.pricing import PriceBook
from app.usage.service import LedgerMaintenance
from app.vector_stores.service import VectorStores
from app.vector_stores.storage import StorageMeter


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        forget_dead_workers()  # a worker uvicorn replaced: its open streams are not open any more
        engine = create_engine(settings.database)
        sessionmaker = create_sessionmaker(engine)
        secret = resolve_key_secret(settings)
        upstream = Upstream(settings.upstream, settings.gateway.upstreams)
        configured = [default_target(settings.upstream), *settings.gateway.upstreams]
        directory = UpstreamDirectory(upstream, configured, sessionmaker, Sealer(secret, "upstream-keys"))
        await directory.refresh()
        if settings.keys.admin_key is not None:
            async with sessionmaker.begin() as session:
                await ensure_admin(session, secret, settings.keys.admin_key.get_secret_value())
        # tiktoken's tables and the price table take a moment to load; pay it at start, not on a request.
        tokens.use_token_server(settings.gateway.tokenizer_socket)
        tokens.prepare("gpt-4o-mini")
        prices = PriceBook(settings.gateway.price_overrides, settings.fine_tuning.tunable)
        prices.is_priced("gpt-4o-mini")
        app.state.settings = settings
        app.state.sessionmaker = sessionmaker
        app.state.key_secret = secret
        app.state.authenticator = Authenticator(sessionmaker, secret, settings.keys.auth_cache_ttl_s)
        functions = None
        if engine.dialect.name == "postgresql":
            pool = await create_money_pool(settings.database)
            functions = MoneyFunctions(pool, settings.database.pool_timeout_s, settings.database.statement_timeout_s)
        spend = SpendService(sessionmaker, prices, settings.spend, functions)
        limiter = create_rate_limiter(
            settings.spend.redis_url,
            slot_ttl_s=settings.upstream.read_timeout_s + 60,
            timeout_s=settings.spend.redis_timeout_s,
        )
        app.state.limits = LimitsCache(sessionmaker, settings.keys.auth_cache_ttl_s)
        app.state.spend = spend
        app.state.gateway = Gateway(upstream, prices, Meter(spend, limiter, app.state.limits))
        media_prices = MediaPrices(prices, settings.gateway.image_prices)
        app.state.images = ImageCalls(app.state.gateway, media_prices)
        app.state.audio = AudioCalls(app.state.gateway, media_prices)
        app.state.catalog = ModelCatalog(upstream, settings.gateway.models_cache_ttl_s)
        app.state.runs = RunExecutor(sessionmaker, app.state.gateway)
        app.state.thread_chats = ThreadChats(sessionmaker)
        app.state.upstreams = directory
        app.state.responses = Responses(app.state.gateway, sessionmaker)
        app.state.conversations = Conversations(upstream, sessionmaker)
        app.state.files = FileService(sessionmaker, upstream, settings.files, settings.fine_tuning)
        app.state.uploads = UploadService(sessionmaker, upstream, app.state.files, settings.files)
        app.state.vector_stores = VectorStores(sessionmaker, upstream)
        storage = StorageMeter(sessionmaker, upstream, spend, settings.vector_stores)
        settler = BatchSettler(sessionmaker, upstream, spend, prices, settings.batches)
        app.state.batches = Batches(sessionmaker, app.state.gateway, settler, settings)
        fine_tuned = FineTunedDirectory(sessionmaker)
        await fine_tuned.refresh()
        app.state.gateway.fine_tuned_access = fine_tuned.allows
        app.state.catalog.fine_tuned_access = fine_tuned.allows
        app.state.fine_tuned_models = fine_tuned
        app.state.fine_tuning = FineTuning(
            sessionmaker, upstream, app.state.gateway.meter, fine_tuned, settings.fine_tuning
        )
        tuning = settings.fine_tuning
        ledger = LedgerMaintenance(sessionmaker, settings.usage)
        if engine.dialect.name == "postgresql":
            # This month's and the next months' partitions exist before the first request.
            await ledger.maintain()
        tasks = [
            asyncio.create_task(every(settings.spend.reaper_interval_s, spend.reap_once), name="lease-reaper"),
            asyncio.create_task(every(settings.spend.lease_ttl_s / 3, spend.heartbeat_once), name="lease-heartbeat"),
            asyncio.create_task(every(1.0, flush_logs), name="log-flush"),
            asyncio.create_task(every(settings.gateway.upstreams_refresh_s, directory.refresh), name="upstreams"),
            asyncio.create_task(every(settings.batches.poll_interval_s, settler.poll_once), name="batch-poller"),
            asyncio.create_task(
                every(settings.vector_stores.storage_meter_interval_s, storage.run_once), name="storage-meter"
            ),
            asyncio.create_task(every(tuning.poll_interval_s, app.state.fine_tuning.poll_once), name="fine-tuning"),
            asyncio.create_task(every(tuning.refresh_s, fine_tuned.refresh), name="fine-tuned-models"),
        ]
        if engine.dialect.name == "postgresql":
            interval = settings.usage.maintenance_interval_s
            tasks.append(asyncio.create_task(every(interval, ledger.maintain), name="ledger-partitions"))
        freeze_startup_heap()
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await spend.flushed()
            if functions is not None:
                await functions.close()
            await limiter.aclose()
            await flush_logs()
            await upstream.aclose()
            await engine.dispose()
            tokens.use_token_server(None)

    app = FastAPI(
        title="Tollgate",
        summary="A metered gateway in front of the OpenAI API",
        version="0.1.0",
        lifespan=lifespan,
        # FastAPI's built-in OpenTelemetry hooks look up providers on every request; unused here.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    install_error_handlers(app)
    document_errors(app)
    streamed = [
        (re.compile(r"^/v1/files/?$"), settings.files.max_upload_bytes + FORM_OVERHEAD_BYTES),
        (re.compile(r"^/v1/uploads/[^/]+/parts/?$"), settings.files.max_part_bytes + FORM_OVERHEAD_BYTES),
        *((re.compile(f"^{re.escape(path)}/?$"), settings.gateway.max_upload_bytes) for path in UPLOAD_PATHS),
    ]
    # Innermost, so the body limit and every layer outside it still apply to the metered calls.
    lane = metered_routes()
    app.add_middleware(FastLane, routes=lane, handlers=app.exception_handlers)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.gateway.max_body_bytes, streamed=streamed)
    if settings.gateway.cors_origins:
        # Browser frontends call Tollgate directly; they authenticate with a bearer key, not cookies.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.gateway.cors_origins,
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["authorization", "content-type", "openai-beta", "x-stainless-*", "x-tollgate-thread-id"],
            expose_headers=["x-request-id", "retry-after", "x-tollgate-overhead-ms", "x-tollgate-upstream-ms"],
            max_age=600,
        )
    app.add_middleware(RequestContextMiddleware)
    # Outermost, so the overhead it reports covers every other layer.
    app.add_middleware(MetricsMiddleware)
    for router in routers:
        # Where FastAPI decodes the JSON body, a dependency checks it for text Tollgate refuses; the
        # metered routes read their own bodies and check them as they read, with nothing to solve.
        decodes = any(getattr(route, "body_field", None) is not None for route in router.routes)
        if decodes and any(route in router.routes for route in lane):
            raise RuntimeError("a router the fast lane serves must not get router dependencies")
        app.include_router(router, dependencies=[Depends(refuse_unstorable_body)] if decodes else None)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def create_app_from_env() -> FastAPI:
    """Entry point for ``uvicorn --factory app.main:create_app_from_env`` (Docker, workers)."""
    settings = get_settings()
    configure_logging(settings.gateway.log_level, settings.gateway.log_json)
    return create_app(settings)
