"""Fine-tuning jobs through Tollgate with the official SDK: checked files, the estimate reserved,
the trained tokens charged once the job finishes, and every job its creator's alone."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from datetime import timedelta

import openai
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from starlette.applications import Starlette

from app.config import SpendSettings
from app.fine_tuning.validation import auto_epochs
from app.kit.db_types import utcnow
from app.models import BudgetLease
from app.models import usage_record as ledger
from app.spend.service import SpendService
from app.usage.pricing import PriceBook
from tests.fine_tuning.data import good_file, tokens_of
from tests.fine_tuning.helpers import (
    TRAINING_MICROS_PER_TOKEN,
    create_job,
    figures,
    job_rows,
    ledger_row,
    run_to_end,
    upload,
)
from tests.fixtures.live_server import LiveServer
from tests.fixtures.servers import Admin, Tenant, lease_count, settled, usage_rows

TOKENS = tokens_of(12)
EPOCHS = auto_epochs(12)  # 8: the cookbook's heuristic for a small file
ESTIMATE = TOKENS * EPOCHS * TRAINING_MICROS_PER_TOKEN


async def test_a_job_is_estimated_reserved_then_charged_its_trained_tokens(
    tollgate: LiveServer, admin: Admin, engine: AsyncEngine
) -> None:
    tenant = await admin.tenant()
    budget = await admin.budget("user", tenant.user_id, "10")
    client = tenant.client(tollgate.url)
    job = await create_job(client)
    assert (job.object, job.status, job.model) == ("fine_tuning.job", "validating_files", "gpt-4o-mini")
    assert job.organization_id == ""  # the shared upstream organization is not shown
    shown = figures(job)
    assert shown == {
        "training_tokens": TOKENS,
        "n_epochs": EPOCHS,
        "estimated_tokens": TOKENS * EPOCHS,
        "estimated_cost_micros": ESTIMATE,
        "charged_cost_micros": None,
    }
    state = await admin.budget_state(budget)
    assert (state["reserved_micros"], state["spent_micros"]) == (ESTIMATE, 0)
    # The hold is a lease named by the job id that expires days from now (not the request's
    # 60 s), so the reaper leaves it while the job runs.
    async with engine.connect() as conn:
        expires = await conn.scalar(select(BudgetLease.expires_at).where(BudgetLease.request_id == job.id))
    assert expires is not None and expires > utcnow() + timedelta(days=6)
    await SpendService(async_sessionmaker(engine), PriceBook({}), SpendSettings()).reap_once()
    assert await lease_count(engine, tenant.key_id) == 1
    assert await ledger_row(engine, job.id) is None

    done = await run_to_end(client, job.id)
    assert done.status == "succeeded" and done.trained_tokens == TOKENS * EPOCHS
    assert done.fine_tuned_model is not None and done.fine_tuned_model.startswith("ft:gpt-4o-mini:")
    assert figures(done)["charged_cost_micros"] == ESTIMATE
    await settled()
    row = await ledger_row(engine, job.id)
    assert row is not None
    assert (row.endpoint, row.model, row.status, row.unit, row.units) == (
        "fine_tuning.jobs",
        "gpt-4o-mini",
        ledger.STATUS_OK,
        ledger.UNIT_TOKEN,
        TOKENS * EPOCHS,
    )
    assert (row.cost_micros, row.user_id, row.api_key_id) == (ESTIMATE, tenant.user_id, tenant.key_id)
    state = await admin.budget_state(budget)
    assert (state["reserved_micros"], state["spent_micros"]) == (0, ESTIMATE)
    assert await lease_count(engine, tenant.key_id) == 0

    # Reading a finished job again charges nothing more.
    await client.fine_tuning.jobs.retrieve(job.id)
    assert [r.request_id for r in await usage_rows(engine, tenant.key_id)] == [job.id]
    events = await client.fine_tuning.jobs.list_events(job.id)
    assert events.data and events.data[0].message == "Job succeeded"
    checkpoints = await client.fine_tuning.jobs.checkpoints.list(job.id)
    assert [c.fine_tuning_job_id for c in checkpoints.data] == [job.id]
    # The metrics file upstream wrote is the job owner's to read, and no one else's.
    [result] = done.result_files
    assert (await client.files.content(result)).content.startswith(b"step,train_loss")
    with pytest.raises(openai.NotFoundError):
        await (await admin.tenant()).client(tollgate.url).files.content(result)


async def test_the_charge_is_what_upstream_trained_not_the_estimate(
    tollgate: LiveServer, admin: Admin, engine: AsyncEngine
) -> None:
    tenant = await admin.tenant()
    budget = await admin.budget("user", tenant.user_id, "10")
    client = tenant.client(tollgate.url)
    method = {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}}
    job = await create_job(client, method=method, extra_body={"mock": {"trained_tokens": 1000, "steps": 1}})
    assert figures(job)["estimated_cost_micros"] == TOKENS * 2 * TRAINING_MICROS_PER_TOKEN
    await run_to_end(client, job.id)
    row = await ledger_row(engine, job.id)
    assert row is not None and (row.units, row.cost_micros) == (1000, 1000 * TRAINING_MICROS_PER_TOKEN)
    state = await admin.budget_state(budget)
    assert (state["reserved_micros"], state["spent_micros"]) == (0, 3000)


async def test_a_failed_job_is_charged_what_it_trained_and_a_cancelled_one_nothing(
    tollgate: LiveServer, admin: Admin, engine: AsyncEngine, mock_app: Starlette
) -> None:
    tenant = await admin.tenant()
    budget = await admin.budget("user", tenant.user_id, "10")
    client = tenant.client(tollgate.url)
    failing = await create_job(client)
    await client.fine_tuning.jobs.retrieve(failing.id)
    mock_app.state.fine_tuning.fail(failing.id)
    failed = await run_to_end(client, failing.id)
    assert failed.status == "failed" and failed.trained_tokens == TOKENS * EPOCHS // 2
    row = await ledger_row(engine, failing.id)
    assert row is not None
    assert (row.status, row.error_code) == (ledger.STATUS_UPSTREAM_ERROR, "job_failed")
    assert row.cost_micros == TOKENS * EPOCHS // 2 * TRAINING_MICROS_PER_TOKEN

    cancelling = await create_job(client)
    cancelled = await client.fine_tuning.jobs.cancel(cancelling.id)
    assert cancelled.status == "cancelled"
    row = await ledger_row(engine, cancelling.id)
    assert row is not None and (row.cost_micros, row.error_code) == (0, "job_cancelled")
    state = await admin.budget_state(budget)
    assert (state["reserved_micros"], state["spent_micros"]) == (0, TOKENS * EPOCHS // 2 * TRAINING_MICROS_PER_TOKEN)
    assert await lease_count(engine, tenant.key_id) == 0


async def test_pause_and_resume(tollgate: LiveServer, tenant: Tenant) -> None:
    client = tenant.client(tollgate.url)
    job = await create_job(client)
    await client.fine_tuning.jobs.retrieve(job.id)
    assert (await client.fine_tuning.jobs.retrieve(job.id)).status == "running"
    assert str((await client.fine_tuning.jobs.pause(job.id)).status) == "paused"
    assert str((await client.fine_tuning.jobs.retrieve(job.id)).status) == "paused"
    assert (await client.fine_tuning.jobs.resume(job.id)).status == "running"
    with pytest.raises(openai.BadRequestError):  # upstream's refusal, scrubbed
        await client.fine_tuning.jobs.resume(job.id)


async def test_lists_show_only_the_callers_jobs(tollgate: LiveServer, admin: Admin) -> None:
    alice, bob = await admin.tenant(), await admin.tenant()
    a, b = alice.client(tollgate.url), bob.client(tollgate.url)
    file_id = await upload(a)
    mine = [(await create_job(a, file_id)).id for _ in range(3)]
    bobs = (await create_job(b)).id

    assert [j.id for j in (await a.fine_tuning.jobs.list()).data] == mine[::-1]
    assert [j.id for j in (await b.fine_tuning.jobs.list()).data] == [bobs]
    first = await a.fine_tuning.jobs.list(limit=2)
    assert ([j.id for j in first.data], first.has_more) == (mine[:0:-1], True)
    assert [j.id async for j in a.fine_tuning.jobs.list(limit=1)] == mine[::-1]  # the SDK follows `after`
    listed = (await a.fine_tuning.jobs.list()).data[0]
    assert figures(listed)["estimated_cost_micros"] == ESTIMATE
    with pytest.raises(openai.BadRequestError):  # a cursor naming Bob's job is no way in
        await a.fine_tuning.jobs.list(after=bobs)


async def test_another_users_job_and_files_are_404_on_every_route(
    tollgate: LiveServer, admin: Admin, engine: AsyncEngine, mock_app: Starlette
) -> None:
    alice, bob = await admin.tenant(), await admin.tenant()
    a, b = alice.client(tollgate.url), bob.client(tollgate.url)
    file_id = await upload(a)
    job = await create_job(a, file_id)
    jobs = b.fine_tuning.jobs
    for job_id in (job.id, "ftjob-doesnotexist"):
        calls: list[Awaitable[object]] = [
            jobs.retrieve(job_id),
            jobs.cancel(job_id),
            jobs.pause(job_id),
            jobs.resume(job_id),
            jobs.list_events(job_id),
            jobs.checkpoints.list(job_id),
        ]
        for call in calls:
            with pytest.raises(openai.NotFoundError) as caught:
                await call
            assert caught.value.body == {
                "message": f"Could not find fine-tune job: {job_id}",
                "type": "invalid_request_error",
                "param": "fine_tuning_job_id",
                "code": None,
            }
    assert mock_app.state.fine_tuning.jobs[job.id].obj["status"] == "validating_files"  # never touched
    for kwargs in ({"training_file": file_id}, {"training_file": await upload(b), "validation_file": file_id}):
        with pytest.raises(openai.NotFoundError) as caught:
            await b.fine_tuning.jobs.create(model="gpt-4o-mini", **kwargs)  # type: ignore[arg-type]
        assert caught.value.body["message"] == f"No such File object: {file_id}"  # type: ignore[index]
    assert await job_rows(engine, bob.user_id) == []
    assert [r.request_id for r in await usage_rows(engine, bob.key_id)] == []


async def test_a_job_the_budget_cannot_cover_is_refused_before_upstream(
    tollgate: LiveServer, admin: Admin, engine: AsyncEngine, mock_app: Starlette
) -> None:
    tenant = await admin.tenant()
    budget = await admin.budget("user", tenant.user_id, f"{(ESTIMATE - 1) / 1_000_000:.6f}")
    client = tenant.client(tollgate.url)
    file_id = await upload(client)
    before = set(mock_app.state.fine_tuning.jobs) if hasattr(mock_app.state, "fine_tuning") else set()
    with pytest.raises(openai.RateLimitError) as caught:
        await create_job(client, file_id)
    assert caught.value.code == "user_budget_exceeded"
    assert caught.value.response.headers["x-should-retry"] == "false"
    assert caught.value.body["type"] == "insufficient_quota"  # type: ignore[index]
    assert (set(mock_app.state.fine_tuning.jobs) if hasattr(mock_app.state, "fine_tuning") else set()) == before
    assert await job_rows(engine, tenant.user_id) == []
    state = await admin.budget_state(budget)
    assert (state["reserved_micros"], state["spent_micros"]) == (0, 0)
    # Fewer epochs fit.
    job = await create_job(client, file_id, hyperparameters={"n_epochs": 1})
    assert figures(job)["estimated_cost_micros"] == TOKENS * TRAINING_MICROS_PER_TOKEN
    assert (await admin.budget_state(budget))["reserved_micros"] == TOKENS * TRAINING_MICROS_PER_TOKEN
    await client.fine_tuning.jobs.cancel(job.id)  # and cancelling gives the hold back at once
    state = await admin.budget_state(budget)
    assert (state["reserved_micros"], state["spent_micros"]) == (0, 0)
    assert await lease_count(engine, tenant.key_id) == 0


@pytest.mark.parametrize(
    ("kwargs", "status", "code", "param"),
    [
        ({"model": "text-embedding-3-small"}, 400, "model_not_priced", "model"),
        ({"method": {"type": "dpo"}}, 400, "unsupported_method", "method.type"),
        ({"hyperparameters": {"n_epochs": 0}}, 400, None, "hyperparameters.n_epochs"),
        ({"training_file": "unchecked"}, 400, "invalid_file", "training_file"),
    ],
)
async def test_bad_job_requests_are_refused_and_write_nothing(
    tollgate: LiveServer,
    tenant: Tenant,
    engine: AsyncEngine,
    kwargs: dict[str, object],
    status: int,
    code: str | None,
    param: str,
) -> None:
    client = tenant.client(tollgate.url)
    body: dict[str, object] = {"model": "gpt-4o-mini", "training_file": await upload(client), **kwargs}
    if body["training_file"] == "unchecked":
        body["training_file"] = (await client.files.create(file=("x.jsonl", good_file(12)), purpose="user_data")).id
    with pytest.raises(openai.APIStatusError) as caught:
        await client.fine_tuning.jobs.create(**body)  # type: ignore[arg-type]
    assert caught.value.status_code == status
    assert (caught.value.code, caught.value.body["param"]) == (code, param)  # type: ignore[index]
    assert await job_rows(engine, tenant.user_id) == []
    assert await usage_rows(engine, tenant.key_id) == []


async def test_job_creation_counts_against_the_request_rate_limit(
    tollgate: LiveServer, admin: Admin, engine: AsyncEngine
) -> None:
    tenant = await admin.tenant()
    limited = await admin.http.put("/admin/rate-limits", json={"scope": "user", "scope_id": tenant.user_id, "rpm": 1})
    assert limited.status_code == 200, limited.text
    client = tenant.client(tollgate.url)
    file_id = await upload(client)
    if time.time() % 60 > 50:  # fixed windows roll at each whole minute: do not straddle one
        await asyncio.sleep(60.5 - time.time() % 60)
    first = await client.fine_tuning.jobs.with_raw_response.create(model="gpt-4o-mini", training_file=file_id)
    assert first.headers["x-ratelimit-limit-requests"] == "1"
    with pytest.raises(openai.RateLimitError) as caught:
        await create_job(client, file_id)
    assert caught.value.code == "rate_limit_exceeded"
    assert [j.id for j in await job_rows(engine, tenant.user_id)] == [first.parse().id]
