"""Support access in the domains that plugged into the mechanism at merge time: vector stores,
batches and run steps, through the SDK with an admin key."""

from __future__ import annotations

import json

import openai
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.audit.helpers import audit_rows, event_of, new_admin, support_event
from tests.fixtures.live_server import LiveServer
from tests.fixtures.servers import PRICED_MODEL, Admin

NOTES = b"Support can read this store."
LINE = {
    "custom_id": "a",
    "method": "POST",
    "url": "/v1/chat/completions",
    "body": {"model": PRICED_MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10},
}


async def test_admin_manages_another_tenants_vector_store(
    tollgate: LiveServer, admin: Admin, engine: AsyncEngine
) -> None:
    alice, support = await admin.tenant(), await new_admin(admin)
    a, s = alice.client(tollgate.url), support.client(tollgate.url)
    first = (await a.files.create(file=("a.txt", NOTES), purpose="assistants")).id
    second = (await a.files.create(file=("b.txt", b"more"), purpose="assistants")).id
    mine = (await s.files.create(file=("s.txt", b"support's"), purpose="assistants")).id
    store = await a.vector_stores.create(name="docs", file_ids=[first])
    sid, owner = store.id, alice.user_id

    read = await s.vector_stores.with_raw_response.retrieve(sid)
    assert await support_event(engine, support, read.headers["x-request-id"]) == (
        "object.read",
        "vector_store",
        sid,
        owner,
    )
    renamed = await s.vector_stores.with_raw_response.update(sid, name="handbook")
    rid = renamed.headers["x-request-id"]
    assert await support_event(engine, support, rid) == ("object.updated", "vector_store", sid, owner)
    listed = await s.vector_stores.with_raw_response.list(extra_query={"user": alice.user_name})
    assert [(x.id, x.name) for x in listed.parse().data] == [(sid, "handbook")]
    rid = listed.headers["x-request-id"]
    assert await support_event(engine, support, rid) == ("object.listed", "vector_store", None, owner)

    # Files added to a tenant's store must be that tenant's own, also when an admin adds them.
    attached = await s.vector_stores.files.with_raw_response.create(vector_store_id=sid, file_id=second)
    rid = attached.headers["x-request-id"]
    assert await support_event(engine, support, rid) == ("object.updated", "vector_store", sid, owner)
    with pytest.raises(openai.NotFoundError):
        await s.vector_stores.files.create(vector_store_id=sid, file_id=mine)
    files = await s.vector_stores.files.with_raw_response.list(vector_store_id=sid)
    assert {f.id for f in files.parse().data} == {first, second}
    assert (await support_event(engine, support, files.headers["x-request-id"]))[0] == "object.read"

    deleted = await s.vector_stores.with_raw_response.delete(sid)
    rid = deleted.headers["x-request-id"]
    assert await support_event(engine, support, rid) == ("object.deleted", "vector_store", sid, owner)
    assert (await a.vector_stores.list()).data == []


async def test_admin_reads_lists_and_cancels_another_tenants_batch(
    tollgate: LiveServer, admin: Admin, engine: AsyncEngine
) -> None:
    alice, support = await admin.tenant(), await new_admin(admin)
    a, s = alice.client(tollgate.url), support.client(tollgate.url)
    file_id = (await a.files.create(file=("r.jsonl", json.dumps(LINE).encode() + b"\n"), purpose="batch")).id
    batch = await a.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h")
    bid, owner = batch.id, alice.user_id

    read = await s.batches.with_raw_response.retrieve(bid)
    assert read.parse().id == bid
    assert await support_event(engine, support, read.headers["x-request-id"]) == ("object.read", "batch", bid, owner)
    listed = await s.batches.with_raw_response.list(extra_query={"user": alice.user_id})
    assert [x.id for x in listed.parse().data] == [bid]
    rid = listed.headers["x-request-id"]
    assert await support_event(engine, support, rid) == ("object.listed", "batch", None, owner)
    cancelled = await s.batches.with_raw_response.cancel(bid)
    rid = cancelled.headers["x-request-id"]
    assert await support_event(engine, support, rid) == ("object.updated", "batch", bid, owner)
    assert (await a.batches.retrieve(bid)).status in ("cancelling", "cancelled")


async def test_admin_reads_another_tenants_run_steps(tollgate: LiveServer, admin: Admin, engine: AsyncEngine) -> None:
    alice, support = await admin.tenant(), await new_admin(admin)
    a, s = alice.client(tollgate.url), support.client(tollgate.url)
    assistant = await a.beta.assistants.create(model=PRICED_MODEL)
    thread = await a.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    run = await a.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)

    listed = await s.beta.threads.runs.steps.with_raw_response.list(run.id, thread_id=thread.id)
    [step] = listed.parse().data
    rid = listed.headers["x-request-id"]
    assert await support_event(engine, support, rid) == ("object.listed", "thread.run", run.id, alice.user_id)
    got = await s.beta.threads.runs.steps.with_raw_response.retrieve(step.id, thread_id=thread.id, run_id=run.id)
    assert got.parse().id == step.id
    event = await event_of(engine, got.headers["x-request-id"])
    assert (event.action, event.target_id, event.owner_id, event.detail) == (
        "object.read",
        run.id,
        alice.user_id,
        {"step_id": step.id},
    )


async def test_other_tenants_still_get_404_and_leave_no_event(
    tollgate: LiveServer, admin: Admin, engine: AsyncEngine
) -> None:
    alice, bob = await admin.tenant(), await admin.tenant()
    a, b = alice.client(tollgate.url), bob.client(tollgate.url)
    store = await a.vector_stores.create(name="private")
    file_id = (await a.files.create(file=("r.jsonl", json.dumps(LINE).encode() + b"\n"), purpose="batch")).id
    batch = await a.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h")
    assistant = await a.beta.assistants.create(model=PRICED_MODEL)
    thread = await a.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    run = await a.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    for call in (
        b.vector_stores.retrieve(store.id),
        b.vector_stores.delete(store.id),
        b.vector_stores.list(extra_query={"user": alice.user_name}),
        b.batches.retrieve(batch.id),
        b.batches.cancel(batch.id),
        b.batches.list(extra_query={"user": alice.user_name}),
        b.beta.threads.runs.steps.list(run.id, thread_id=thread.id),
    ):
        with pytest.raises(openai.NotFoundError):
            await call
    assert await audit_rows(engine, actor_user_id=bob.user_id) == []
    assert [e for e in await audit_rows(engine, owner_id=alice.user_id) if e.action.startswith("object.")] == []
