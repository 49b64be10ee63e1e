"""Support access to what Tollgate stores itself (assistants, threads, messages, runs), through
the SDK's beta clients with an admin key; and what stays the owner's alone."""

from __future__ import annotations

import json

import openai
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.audit.helpers import audit_rows, new_admin, support_event
from tests.fixtures.live_server import LiveServer
from tests.fixtures.servers import PRICED_MODEL, Admin

ADD = {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}
TOOL_CALL = "#mock " + json.dumps({"tool_call": {"name": "add", "arguments": "{}"}})


async def test_admin_manages_another_tenants_assistant(tollgate: LiveServer, admin: Admin, engine: AsyncEngine) -> None:
    alice, support = await admin.tenant(), await new_admin(admin)
    a, s = alice.client(tollgate.url), support.client(tollgate.url)
    assistant = await a.beta.assistants.create(model=PRICED_MODEL, name="helper")
    aid = assistant.id

    read = await s.beta.assistants.with_raw_response.retrieve(aid)
    assert read.parse().name == "helper"
    rid = read.headers["x-request-id"]
    assert await support_event(engine, support, rid) == ("object.read", "assistant", aid, alice.user_id)
    updated = await s.beta.assistants.with_raw_response.update(aid, name="fixed by support")
    rid = updated.headers["x-request-id"]
    assert await support_event(engine, support, rid) == ("object.updated", "assistant", aid, alice.user_id)
    assert (await a.beta.assistants.retrieve(aid)).name == "fixed by support"

    listed = await s.beta.assistants.with_raw_response.list(extra_query={"user": alice.user_name})
    assert [x.id for x in listed.parse().data] == [aid]
    rid = listed.headers["x-request-id"]
    assert await support_event(engine, support, rid) == ("object.listed", "assistant", None, alice.user_id)

    deleted = await s.beta.assistants.with_raw_response.delete(aid)
    rid = deleted.headers["x-request-id"]
    assert await support_event(engine, support, rid) == ("object.deleted", "assistant", aid, alice.user_id)
    with pytest.raises(openai.NotFoundError):
        await a.beta.assistants.retrieve(aid)


async def test_admin_manages_another_tenants_thread_and_messages(
    tollgate: LiveServer, admin: Admin, engine: AsyncEngine
) -> None:
    alice, support = await admin.tenant(), await new_admin(admin)
    a, s = alice.client(tollgate.url), support.client(tollgate.url)
    thread = await a.beta.threads.create(messages=[{"role": "user", "content": "help me"}])
    tid, owner = thread.id, alice.user_id

    read = await s.beta.threads.with_raw_response.retrieve(tid)
    assert await support_event(engine, support, read.headers["x-request-id"]) == ("object.read", "thread", tid, owner)
    updated = await s.beta.threads.with_raw_response.update(tid, metadata={"ticket": "42"})
    rid = updated.headers["x-request-id"]
    assert await support_event(engine, support, rid) == ("object.updated", "thread", tid, owner)

    listed = await s.beta.threads.messages.with_raw_response.list(tid)
    [message] = listed.parse().data
    rid = listed.headers["x-request-id"]
    assert await support_event(engine, support, rid) == ("object.listed", "thread", tid, owner)
    mid = message.id
    got = await s.beta.threads.messages.with_raw_response.retrieve(mid, thread_id=tid)
    rid = got.headers["x-request-id"]
    assert await support_event(engine, support, rid) == ("object.read", "thread.message", mid, owner)
    changed = await s.beta.threads.messages.with_raw_response.update(mid, thread_id=tid, metadata={"seen": "yes"})
    rid = changed.headers["x-request-id"]
    assert await support_event(engine, support, rid) == ("object.updated", "thread.message", mid, owner)
    added = await s.beta.threads.messages.with_raw_response.create(tid, role="assistant", content="on it")
    rid = added.headers["x-request-id"]
    assert await support_event(engine, support, rid) == ("object.updated", "thread", tid, owner)
    removed = await s.beta.threads.messages.with_raw_response.delete(mid, thread_id=tid)
    rid = removed.headers["x-request-id"]
    assert await support_event(engine, support, rid) == ("object.deleted", "thread.message", mid, owner)
    assert [m.content[0].text.value for m in (await a.beta.threads.messages.list(tid)).data] == ["on it"]  # type: ignore[union-attr]

    async with support.http(tollgate.url) as http:
        by_query = await http.get("/v1/threads", params={"user": alice.user_name})
        by_route = await http.get(f"/admin/users/{alice.user_name}/threads")
    for response in (by_query, by_route):
        assert [t["id"] for t in response.json()["data"]] == [tid]
        rid = response.headers["x-request-id"]
        assert await support_event(engine, support, rid) == ("object.listed", "thread", None, owner)

    deleted = await s.beta.threads.with_raw_response.delete(tid)
    rid = deleted.headers["x-request-id"]
    assert await support_event(engine, support, rid) == ("object.deleted", "thread", tid, owner)
    with pytest.raises(openai.NotFoundError):
        await a.beta.threads.retrieve(tid)


async def test_admin_reads_updates_and_cancels_another_tenants_run(
    tollgate: LiveServer, admin: Admin, engine: AsyncEngine
) -> None:
    alice, support = await admin.tenant(), await new_admin(admin)
    a, s = alice.client(tollgate.url), support.client(tollgate.url)
    assistant = await a.beta.assistants.create(model=PRICED_MODEL, tools=[ADD])  # type: ignore[list-item]
    thread = await a.beta.threads.create(messages=[{"role": "user", "content": TOOL_CALL}])
    run = await a.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "requires_action"
    rid_, tid, owner = run.id, thread.id, alice.user_id

    read = await s.beta.threads.runs.with_raw_response.retrieve(rid_, thread_id=tid)
    rid = read.headers["x-request-id"]
    assert await support_event(engine, support, rid) == ("object.read", "thread.run", rid_, owner)
    listed = await s.beta.threads.runs.with_raw_response.list(tid)
    assert [r.id for r in listed.parse().data] == [rid_]
    rid = listed.headers["x-request-id"]
    assert await support_event(engine, support, rid) == ("object.listed", "thread", tid, owner)
    updated = await s.beta.threads.runs.with_raw_response.update(rid_, thread_id=tid, metadata={"by": "support"})
    rid = updated.headers["x-request-id"]
    assert await support_event(engine, support, rid) == ("object.updated", "thread.run", rid_, owner)

    # Anything that would bill a call stays the owner's: the admin acts there as itself.
    for call in (
        s.beta.threads.runs.submit_tool_outputs(
            rid_, thread_id=tid, tool_outputs=[{"tool_call_id": "x", "output": "1"}]
        ),
        s.beta.threads.runs.create(thread_id=tid, assistant_id=assistant.id),
    ):
        with pytest.raises(openai.NotFoundError):
            await call
    with pytest.raises(openai.NotFoundError):
        await s.chat.completions.create(
            model=PRICED_MODEL,
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"X-Tollgate-Thread-Id": tid},
        )

    cancelled = await s.beta.threads.runs.with_raw_response.cancel(rid_, thread_id=tid)
    assert cancelled.parse().status == "cancelled"
    rid = cancelled.headers["x-request-id"]
    assert await support_event(engine, support, rid) == ("object.updated", "thread.run", rid_, owner)
    assert (await a.beta.threads.runs.retrieve(rid_, thread_id=tid)).metadata == {"by": "support"}


async def test_an_admins_own_objects_are_no_support_access(
    tollgate: LiveServer, admin: Admin, engine: AsyncEngine
) -> None:
    alice, support = await admin.tenant(), await new_admin(admin)
    s = support.client(tollgate.url)
    assistant = await s.beta.assistants.create(model=PRICED_MODEL)
    thread = await s.beta.threads.create(messages=[{"role": "user", "content": "mine"}])
    await s.beta.assistants.retrieve(assistant.id)
    await s.beta.threads.messages.list(thread.id)
    assert (await s.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)).status == "completed"
    assert await audit_rows(engine, actor_user_id=support.user_id) == []
    # Made as the admin, so not in the tenant's lists.
    assert (await alice.client(tollgate.url).beta.assistants.list()).data == []


async def test_other_tenants_still_get_404_and_leave_no_event(
    tollgate: LiveServer, admin: Admin, engine: AsyncEngine
) -> None:
    alice, bob = await admin.tenant(), await admin.tenant()
    a, b = alice.client(tollgate.url), bob.client(tollgate.url)
    assistant = await a.beta.assistants.create(model=PRICED_MODEL)
    thread = await a.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    run = await a.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    [message, *_] = (await a.beta.threads.messages.list(thread.id)).data
    for call in (
        b.beta.assistants.retrieve(assistant.id),
        b.beta.assistants.update(assistant.id, name="x"),
        b.beta.assistants.delete(assistant.id),
        b.beta.threads.retrieve(thread.id),
        b.beta.threads.update(thread.id, metadata={}),
        b.beta.threads.delete(thread.id),
        b.beta.threads.messages.list(thread.id),
        b.beta.threads.messages.retrieve(message.id, thread_id=thread.id),
        b.beta.threads.messages.delete(message.id, thread_id=thread.id),
        b.beta.threads.runs.retrieve(run.id, thread_id=thread.id),
        b.beta.threads.runs.cancel(run.id, thread_id=thread.id),
        b.beta.assistants.list(extra_query={"user": alice.user_id}),
    ):
        with pytest.raises(openai.NotFoundError):
            await call
    assert await audit_rows(engine, actor_user_id=bob.user_id) == []
    assert [e for e in await audit_rows(engine, owner_id=alice.user_id) if e.action.startswith("object.")] == []
