"""Fine-tuning jobs through Tollgate: priced and reserved before upstream sees them, owned by
their creator, and charged once, when they finish, by whichever replica sees that first.

The money: the estimate (the training file's tokens x epochs x the base model's training price)
is reserved on the caller's budgets before the job is created. The reservation becomes a lease
named by the job id that expires ``hold_s`` after the last poll, so the reaper leaves it alone
while the job runs (``spent + reserved <= limit`` holds throughout). When the job is seen
finished, its trained tokens at the training price are charged and the rest released; the
ledger row's request id is the job id, so settling twice is a no-op.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterable
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

import anyio
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.responses import Response

from app.api_keys.schemas import Principal
from app.audit.schemas import ObjectAction
from app.audit.support import Reached, Target, reach_upstream
from app.config import FineTunableModel, FineTuningSettings
from app.db import DB_ERRORS
from app.errors import GatewayError, InvalidRequest, NotFound, ServiceUnavailable, UpstreamError
from app.files.repository import FileRepository
from app.files.schemas import UpstreamFile, parse_upstream
from app.files.service import file_not_found, file_path, record_file
from app.fine_tuning.directory import FineTunedDirectory
from app.fine_tuning.repository import JobRepository, ModelRepository
from app.fine_tuning.schemas import JobCreate, UpstreamJob, parse_create
from app.fine_tuning.validation import auto_epochs
from app.gateway.metering import Meter
from app.gateway.service import CallContext, model_not_found
from app.gateway.upstream import Upstream, forward_query, path_id
from app.kit.db_types import utcnow
from app.kit.pagination import PageParams, cursor_anchor
from app.models import FineTunedModel, FineTuningJob
from app.models import usage_record as ledger
from app.spend.service import Estimate, Reservation
from app.usage.pricing import TokenUsage, fine_tunable
from app.usage.service import Settlement

log = logging.getLogger("tollgate.fine_tuning")

ENDPOINT = "fine_tuning.jobs"
_LIST_QUERY = frozenset({"after", "limit"})
_MAX_LATENCY_MS = 2**31 - 1


def job_not_found(job_id: str) -> NotFound:
    return NotFound(f"Could not find fine-tune job: {job_id}", param="fine_tuning_job_id")


def training_cost(tokens: int, price_per_mtok: Decimal) -> int:
    """Micro-dollars, rounded up once: $X per million tokens is X micro-dollars per token."""
    return math.ceil(tokens * price_per_mtok)


def _json(payload: Any) -> Response:
    return Response(json.dumps(payload, separators=(",", ":")), media_type="application/json")


def with_costs(job: dict[str, Any], row: FineTuningJob) -> dict[str, Any]:
    """Upstream's job object with Tollgate's own figures alongside (SDKs keep unknown fields).
    The upstream organization's id is blanked: it is the shared key's, no tenant's business."""
    return {
        **job,
        **({"organization_id": ""} if "organization_id" in job else {}),
        "tollgate": {
            "training_tokens": row.training_tokens,
            "n_epochs": row.n_epochs,
            "estimated_tokens": row.training_tokens * row.n_epochs,
            "estimated_cost_micros": row.estimated_micros,
            "charged_cost_micros": row.cost_micros,
        },
    }


class FineTuning:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        upstream: Upstream,
        meter: Meter,
        directory: FineTunedDirectory,
        settings: FineTuningSettings,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.upstream = upstream
        self.meter = meter
        self.spend = meter.spend
        self.directory = directory
        self.settings = settings
        self.table = settings.tunable

    async def create(self, ctx: CallContext, raw: bytes, body: dict[str, Any]) -> Response:
        req = parse_create(body)
        ctx = replace(ctx, model=req.model)
        principal = ctx.principal
        if not principal.may_use(req.model):
            raise model_not_found(req.model)
        entry = fine_tunable(self.table, req.model)
        if entry is None:
            raise InvalidRequest(
                f"Tollgate has no training price for model '{req.model}', so it cannot meter fine-tuning it. "
                "An administrator can add one with TOLLGATE_FINE_TUNING_MODELS.",
                param="model",
                code="model_not_priced",
            )
        epochs = req.n_epochs()
        examples, tokens = await self._checked_files(principal, req, entry)
        n_epochs = auto_epochs(examples) if epochs == "auto" else epochs
        micros = training_cost(tokens * n_epochs, entry.training_per_mtok)
        # Admitted like any metered call: rate limits (one request, no tokens), then the reservation.
        admission = await self.meter.admit(principal, ctx.request_id, Estimate.fixed(req.model, ENDPOINT, micros))
        reservation = admission.reservation
        try:
            obj, job = await self._send(ctx, reservation, raw)
        finally:
            if admission.limits:
                with anyio.CancelScope(shield=True):
                    await self.meter.limiter.release(ctx.request_id, admission.limits)
        row = FineTuningJob(
            id=job.id,
            user_id=principal.user_id,
            api_key_id=principal.key_id,
            team_id=principal.team_id,
            model=req.model,
            status=job.status,
            training_tokens=tokens,
            n_epochs=n_epochs,
            estimated_micros=micros,
            job=obj,
            next_poll_at=utcnow() + timedelta(seconds=self.settings.poll_interval_s),
        )
        await self._record(ctx, reservation, row)
        log.info("fine-tuning job %s: %d tokens x %d epochs, estimate %d micros", job.id, tokens, n_epochs, micros)
        response = _json(with_costs(obj, row))
        response.headers.update(admission.headers)
        return response

    async def _send(self, ctx: CallContext, reservation: Reservation, raw: bytes) -> tuple[dict[str, Any], UpstreamJob]:
        """Creates the job upstream; if that fails, the reservation is given back."""
        try:
            reply = await self.upstream.request("POST", "/fine_tuning/jobs", raw)
            obj = json.loads(reply.content)
            return obj, UpstreamJob.model_validate(obj)
        except GatewayError as exc:
            self._release(ctx, reservation, exc.status_code, exc.code)
            raise
        except (ValueError, ValidationError):
            # Upstream answered 2xx but unreadably: there may be a job, but nobody can own it.
            self._release(ctx, reservation, 502, "bad_json")
            raise UpstreamError("The upstream API returned a malformed response.") from None
        except BaseException:
            # The client went away (cancellation): the money is still given back (no await here).
            self._release(ctx, reservation, 499, "cancelled")
            raise

    async def _checked_files(self, principal: Principal, req: JobCreate, entry: FineTunableModel) -> tuple[int, int]:
        """(examples, tokens) of the training file; both files must be the caller's and checked."""
        async with self.sessionmaker() as session:
            repo = FileRepository(session)
            training = await repo.get_owned(req.training_file, principal.user_id)
            validation = await repo.get_owned(req.validation_file, principal.user_id) if req.validation_file else None
        if training is None:
            raise _missing_file(req.training_file, "training_file")
        if req.validation_file is not None and validation is None:
            raise _missing_file(req.validation_file, "validation_file")
        for param, file in (("training_file", training), ("validation_file", validation)):
            if file is None:
                continue
            if file.tune_examples is None or file.tune_tokens is None or file.tune_longest is None:
                raise InvalidRequest(
                    f"File {file.id} was not checked as a fine-tuning file: upload it with purpose 'fine-tune'.",
                    param=param,
                    code="invalid_file",
                )
            if file.tune_longest > entry.max_example_tokens:
                raise InvalidRequest(
                    f"File {file.id} has an example of {file.tune_longest} tokens; {req.model} takes at most "
                    f"{entry.max_example_tokens} tokens per example (example_too_long).",
                    param=param,
                    code="example_too_long",
                )
        assert training.tune_examples is not None and training.tune_tokens is not None
        return training.tune_examples, training.tune_tokens

    async def _record(self, ctx: CallContext, reservation: Reservation, row: FineTuningJob) -> None:
        """Owns the job and keeps its reservation as the job's hold. If that cannot be written,
        the job is cancelled upstream rather than left running with nobody owning or paying it."""
        until = utcnow() + timedelta(seconds=self.settings.hold_s)
        try:
            async with self.sessionmaker.begin() as session:
                await JobRepository(session).create(row)
                if reservation.budget_ids:
                    await self.spend.hold(session, reservation.request_id, until, as_id=row.id)
        except DB_ERRORS:
            log.exception("could not record fine-tuning job %s; cancelling it upstream", row.id)
            with anyio.CancelScope(shield=True):
                try:
                    await self.upstream.request("POST", f"/fine_tuning/jobs/{path_id(row.id)}/cancel")
                except GatewayError:
                    log.error("fine-tuning job %s could not be cancelled upstream", row.id)
                self._release(ctx, reservation, 503, "not_recorded")
            raise ServiceUnavailable("Tollgate could not record the job, so it was cancelled; retry later.") from None

    def _release(self, ctx: CallContext, reservation: Reservation, http_status: int, code: str | None) -> None:
        """No job was made: the reservation is given back, and the failed call is on the ledger."""
        settlement = Settlement(
            request_id=ctx.request_id,
            endpoint=ENDPOINT,
            model=ctx.model,
            tokens=TokenUsage(),
            cost_micros=0,
            status=ledger.STATUS_UPSTREAM_ERROR,
            http_status=http_status,
            latency_ms=int((time.perf_counter() - ctx.started) * 1000),
            usage_source=ledger.SOURCE_UPSTREAM,
            error_code=code,
        )
        self.spend.settle(ctx.principal, reservation, settlement)

    async def owned(
        self, principal: Principal, job_id: str, action: ObjectAction = "object.read"
    ) -> Reached[FineTuningJob]:
        """The caller's job; for an admin any job (audited), even one made upstream outside
        Tollgate, which has no row here (``row`` None)."""
        async with self.sessionmaker.begin() as session:
            repo = JobRepository(session)
            target = Target("fine_tuning.job", job_id)
            found = await reach_upstream(session, principal, target, lambda who: repo.get_owned(job_id, who), action)
        if found is None:
            raise job_not_found(job_id)
        return found

    async def page(self, owner_id: str, params: PageParams) -> Response:
        async with self.sessionmaker() as session:
            repo = JobRepository(session)
            anchor = await cursor_anchor(params, lambda id_: repo.get_owned(id_, owner_id), "job")
            rows, has_more = await repo.page(owner_id, params, anchor)
        data = [with_costs(row.job, row) for row in rows]
        first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
        return _json({"object": "list", "data": data, "first_id": first, "last_id": last, "has_more": has_more})

    async def retrieve(self, principal: Principal, job_id: str) -> Response:
        found = await self.owned(principal, job_id)
        reply = await self.upstream.request("GET", f"/fine_tuning/jobs/{path_id(found.id)}")
        return await self._answer(found, reply.content)

    async def act(self, principal: Principal, job_id: str, action: str) -> Response:
        """``cancel``, ``pause`` or ``resume``; the job object upstream returns is recorded."""
        found = await self.owned(principal, job_id, "object.updated")
        reply = await self.upstream.request("POST", f"/fine_tuning/jobs/{path_id(found.id)}/{action}")
        return await self._answer(found, reply.content)

    async def _answer(self, found: Reached[FineTuningJob], content: bytes) -> Response:
        if found.row is None:  # made outside Tollgate: nothing held or owned here to update
            job = json.loads(content)
            return _json({**job, **({"organization_id": ""} if "organization_id" in job else {})})
        return _json(with_costs(*await self.observe(found.row, content)))

    async def listing(self, principal: Principal, job_id: str, what: str, query: Iterable[tuple[str, str]]) -> Response:
        """``events`` or ``checkpoints`` of one of the caller's jobs, as upstream pages them."""
        found = await self.owned(principal, job_id)
        path = f"/fine_tuning/jobs/{path_id(found.id)}/{what}{forward_query(query, _LIST_QUERY)}"
        reply = await self.upstream.request("GET", path)
        return Response(reply.content, media_type="application/json")

    async def observe(self, row: FineTuningJob, content: bytes) -> tuple[dict[str, Any], FineTuningJob]:
        """Records what upstream said of a job, keeps its hold alive while it runs, and settles it
        once it has finished (from the poller or from a client's read, whichever comes first)."""
        try:
            obj = json.loads(content)
            job = UpstreamJob.model_validate(obj)
        except (ValueError, ValidationError):
            raise UpstreamError("The upstream API returned a malformed response.") from None
        async with self.sessionmaker.begin() as session:
            await JobRepository(session).observe(row.id, job.status, obj)
            if not job.finished:
                until = utcnow() + timedelta(seconds=self.settings.hold_s)
                await self.spend.extend_hold(session, row.id, until)
        row.job, row.status = obj, job.status
        if job.finished and row.settled_at is None:
            try:
                await self._settle(row, job)
            except DB_ERRORS as exc:
                # The hold keeps the money meanwhile; the next poll settles it.
                log.error("settling fine-tuning job %s failed, to be retried: %s", row.id, type(exc).__name__)
        return obj, row

    async def _settle(self, row: FineTuningJob, job: UpstreamJob) -> None:
        trained = job.trained_tokens or 0
        cost = training_cost(trained, self._training_price(row))
        settlement = Settlement(
            request_id=row.id,
            endpoint=ENDPOINT,
            model=row.model,
            tokens=TokenUsage(),
            cost_micros=cost,
            status=ledger.STATUS_OK if job.status == "succeeded" else ledger.STATUS_UPSTREAM_ERROR,
            http_status=200,
            latency_ms=min(int((utcnow() - row.created_at).total_seconds() * 1000), _MAX_LATENCY_MS),
            usage_source=ledger.SOURCE_UPSTREAM,
            error_code=None if job.status == "succeeded" else f"job_{job.status}",
            unit=ledger.UNIT_TOKEN,
            units=trained,
        )
        if cost > row.estimated_micros:
            log.warning(
                "fine-tuning job %s cost %d micros, above its estimate of %d", row.id, cost, row.estimated_micros
            )
        await self.spend.settle_now(row.api_key_id, row.user_id, row.team_id, settlement)
        model = job.fine_tuned_model if job.status == "succeeded" else None
        results = await self._result_files(job)
        now = utcnow()
        async with self.sessionmaker.begin() as session:
            won = await JobRepository(session).mark_settled(row.id, trained, cost, model, now)
            made = None
            if won and model is not None:
                made = FineTunedModel(id=model, user_id=row.user_id, base_model=row.model, job_id=row.id)
                made = await ModelRepository(session).add_new(made)
            files = FileRepository(session)
            for file in results if won else []:
                if await files.get_by_id(file.id) is None:
                    await record_file(session, row.user_id, file)
        row.trained_tokens, row.cost_micros, row.fine_tuned_model, row.settled_at = trained, cost, model, now
        if made is not None:
            self.directory.add_model(made)
        log.info("fine-tuning job %s %s: %d trained tokens, %d micros", row.id, job.status, trained, cost)

    async def _result_files(self, job: UpstreamJob) -> list[UpstreamFile]:
        """The files upstream wrote for the job (metrics), so their owner can read them."""
        found = []
        for file_id in job.result_files:
            try:
                reply = await self.upstream.request("GET", file_path(file_id))
                found.append(parse_upstream(UpstreamFile, reply.content))
            except GatewayError as exc:
                log.warning("result file %s of job %s not recorded: %s", file_id, job.id, exc.code)
        return found

    def _training_price(self, row: FineTuningJob) -> Decimal:
        """The base model's price now; if settings no longer list it, the rate the estimate used."""
        entry = fine_tunable(self.table, row.model)
        if entry is not None:
            return entry.training_per_mtok
        estimated = row.training_tokens * row.n_epochs
        return Decimal(row.estimated_micros) / estimated if estimated else Decimal(0)

    async def poll_once(self, batch: int = 50) -> int:
        """Asks upstream about the unsettled jobs due for a poll, on any replica: each claim is
        exclusive for one interval, and settling is idempotent, so replicas never double-charge."""
        now = utcnow()
        async with self.sessionmaker.begin() as session:
            due = list(
                await JobRepository(session).claim_due(
                    now, now + timedelta(seconds=self.settings.poll_interval_s), batch
                )
            )
        for row in due:
            try:
                reply = await self.upstream.request("GET", f"/fine_tuning/jobs/{path_id(row.id)}")
                await self.observe(row, reply.content)
            except GatewayError as exc:
                log.warning("polling fine-tuning job %s failed: %s", row.id, exc.code or exc.status_code)
        return len(due)


def _missing_file(file_id: str, param: str) -> NotFound:
    error = file_not_found(file_id)
    error.param = param
    return error
