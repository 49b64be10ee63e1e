"""Support access to fine-tuning jobs: an admin key reads, lists and cancels another tenant's
job (each access audited, naming the owner), and reaches a job made upstream outside Tollgate."""

from __future__ import annotations

import openai
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.audit.helpers import audit_rows, new_admin, support_event
from tests.fine_tuning.data import good_file
from tests.fine_tuning.helpers import create_job, run_to_end
from tests.fixtures.live_server import LiveServer
from tests.fixtures.servers import UPSTREAM_KEY, Admin


async def test_admin_reads_lists_and_cancels_another_tenants_job(
    tollgate: LiveServer, admin: Admin, engine: AsyncEngine
) -> None:
    alice, bob, support = await admin.tenant(), await admin.tenant(), await new_admin(admin)
    a, b, s = alice.client(tollgate.url), bob.client(tollgate.url), support.client(tollgate.url)
    job = await create_job(a)
    owner = alice.user_id

    read = await s.fine_tuning.jobs.with_raw_response.retrieve(job.id)
    assert read.parse().id == job.id
    rid = read.headers["x-request-id"]
    assert await support_event(engine, support, rid) == ("object.read", "fine_tuning.job", job.id, owner)
    listed = await s.fine_tuning.jobs.with_raw_response.list(extra_query={"user": alice.user_name})
    assert [j.id for j in listed.parse().data] == [job.id]
    rid = listed.headers["x-request-id"]
    assert await support_event(engine, support, rid) == ("object.listed", "fine_tuning.job", None, owner)
    events = await s.fine_tuning.jobs.list_events(job.id)
    assert events.data

    cancelled = await s.fine_tuning.jobs.with_raw_response.cancel(job.id)
    assert cancelled.parse().status == "cancelled"
    rid = cancelled.headers["x-request-id"]
    assert await support_event(engine, support, rid) == ("object.updated", "fine_tuning.job", job.id, owner)
    assert (await a.fine_tuning.jobs.retrieve(job.id)).status == "cancelled"

    # Another tenant is still refused, and refusing it writes nothing.
    before = len(await audit_rows(engine, target_id=job.id))
    with pytest.raises(openai.NotFoundError):
        await b.fine_tuning.jobs.retrieve(job.id)
    with pytest.raises(openai.NotFoundError):
        await b.fine_tuning.jobs.list(extra_query={"user": alice.user_name})
    assert len(await audit_rows(engine, target_id=job.id)) == before


async def test_a_job_made_outside_tollgate_is_reachable_by_admins_only(
    tollgate: LiveServer, mock_upstream: LiveServer, admin: Admin, engine: AsyncEngine
) -> None:
    tenant, support = await admin.tenant(), await new_admin(admin)
    async with openai.AsyncOpenAI(base_url=mock_upstream.url + "/v1", api_key=UPSTREAM_KEY, max_retries=0) as out:
        file = await out.files.create(file=("t.jsonl", good_file(12)), purpose="fine-tune")
        job = await out.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=file.id)

    with pytest.raises(openai.NotFoundError):
        await tenant.client(tollgate.url).fine_tuning.jobs.retrieve(job.id)
    s = support.client(tollgate.url)
    read = await s.fine_tuning.jobs.with_raw_response.retrieve(job.id)
    assert read.parse().id == job.id and read.parse().organization_id == ""
    rid = read.headers["x-request-id"]
    assert await support_event(engine, support, rid) == ("object.read", "fine_tuning.job", job.id, None)
    finished = await run_to_end(s, job.id)
    assert finished.status == "succeeded"  # relayed; nothing is held or charged for it here
