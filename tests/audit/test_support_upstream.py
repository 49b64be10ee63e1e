"""Support access to objects stored upstream (files, uploads, responses, conversations), through
the SDK with an admin key: another tenant's objects, and ids made upstream outside Tollgate."""

from __future__ import annotations

import openai
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.models import File
from tests.audit.helpers import assert_nowhere_in_trail, audit_rows, new_admin, support_event
from tests.fixtures.live_server import LiveServer
from tests.fixtures.servers import UPSTREAM_KEY, Admin

JSONL = b'{"messages": [{"role": "user", "content": "body-marker-7f3a"}]}\n'
MODEL = "gpt-4o-mini"


def _upstream_client(mock_upstream: LiveServer) -> openai.AsyncOpenAI:
    """Straight to upstream with its key: objects Tollgate never saw being made."""
    return openai.AsyncOpenAI(base_url=mock_upstream.url + "/v1", api_key=UPSTREAM_KEY, max_retries=0)


async def test_admin_reads_lists_and_deletes_another_tenants_file(
    tollgate: LiveServer, admin: Admin, engine: AsyncEngine
) -> None:
    alice, support = await admin.tenant(), await new_admin(admin)
    a, s = alice.client(tollgate.url), support.client(tollgate.url)
    created = await a.files.create(file=("a.jsonl", JSONL, "application/jsonl"), purpose="batch")

    read = await s.files.with_raw_response.retrieve(created.id)
    assert read.parse().id == created.id
    expected = ("object.read", "file", created.id, alice.user_id)
    assert await support_event(engine, support, read.headers["x-request-id"]) == expected
    content = await s.files.with_raw_response.content(created.id)
    assert content.content == JSONL
    assert await support_event(engine, support, content.headers["x-request-id"]) == expected

    listed = await s.files.with_raw_response.list(extra_query={"user": alice.user_name})
    assert [f.id for f in listed.parse().data] == [created.id]
    listing = ("object.listed", "file", None, alice.user_id)
    assert await support_event(engine, support, listed.headers["x-request-id"]) == listing
    assert [f.id for f in (await s.files.list()).data] == []  # without ?user=, the admin's own

    deleted = await s.files.with_raw_response.delete(created.id)
    assert deleted.parse().deleted is True
    expected = ("object.deleted", "file", created.id, alice.user_id)
    assert await support_event(engine, support, deleted.headers["x-request-id"]) == expected
    assert (await a.files.list()).data == []
    await assert_nowhere_in_trail(engine, "body-marker-7f3a", alice.token, support.token)


async def test_admin_completes_another_tenants_upload_and_the_file_stays_theirs(
    tollgate: LiveServer, admin: Admin, engine: AsyncEngine
) -> None:
    alice, support = await admin.tenant(), await new_admin(admin)
    a, s = alice.client(tollgate.url), support.client(tollgate.url)
    upload = await a.uploads.create(bytes=len(JSONL), filename="u.jsonl", mime_type="text/jsonl", purpose="batch")
    part = await s.uploads.parts.with_raw_response.create(upload.id, data=JSONL)
    expected = ("object.updated", "upload", upload.id, alice.user_id)
    assert await support_event(engine, support, part.headers["x-request-id"]) == expected
    done = await s.uploads.with_raw_response.complete(upload.id, part_ids=[part.parse().id])
    assert await support_event(engine, support, done.headers["x-request-id"]) == expected
    file = done.parse().file
    assert file is not None
    async with engine.connect() as conn:
        assert await conn.scalar(select(File.user_id).where(File.id == file.id)) == alice.user_id
    assert (await a.files.retrieve(file.id)).id == file.id


async def test_admin_reads_cancels_and_deletes_another_tenants_response(
    tollgate: LiveServer, admin: Admin, engine: AsyncEngine
) -> None:
    alice, support = await admin.tenant(), await new_admin(admin)
    a, s = alice.client(tollgate.url), support.client(tollgate.url)
    response = await a.responses.create(model=MODEL, input="prompt-marker-91bd")

    read = await s.responses.with_raw_response.retrieve(response.id)
    assert read.parse().output_text == response.output_text
    expected = ("object.read", "response", response.id, alice.user_id)
    assert await support_event(engine, support, read.headers["x-request-id"]) == expected
    items = await s.responses.input_items.with_raw_response.list(response.id)
    assert await support_event(engine, support, items.headers["x-request-id"]) == expected

    deleted = await s.responses.with_raw_response.delete(response.id)
    expected = ("object.deleted", "response", response.id, alice.user_id)
    assert await support_event(engine, support, deleted.headers["x-request-id"]) == expected
    with pytest.raises(openai.NotFoundError):
        await a.responses.retrieve(response.id)
    await assert_nowhere_in_trail(engine, "prompt-marker-91bd", response.output_text)


async def test_admin_manages_another_tenants_conversation(
    tollgate: LiveServer, admin: Admin, engine: AsyncEngine
) -> None:
    alice, support = await admin.tenant(), await new_admin(admin)
    a, s = alice.client(tollgate.url), support.client(tollgate.url)
    conversation = await a.conversations.create(metadata={"topic": "billing"})
    cid = conversation.id

    read = await s.conversations.with_raw_response.retrieve(cid)
    assert read.parse().id == cid
    assert await support_event(engine, support, read.headers["x-request-id"]) == (
        "object.read",
        "conversation",
        cid,
        alice.user_id,
    )
    updated = await s.conversations.with_raw_response.update(cid, metadata={"topic": "escalated"})
    assert await support_event(engine, support, updated.headers["x-request-id"]) == (
        "object.updated",
        "conversation",
        cid,
        alice.user_id,
    )
    # The owner sees the admin's change in its own list.
    async with alice.http(tollgate.url) as http:
        [mine] = (await http.get("/v1/conversations")).json()["data"]
    assert mine["metadata"] == {"topic": "escalated"}

    added = await s.conversations.items.with_raw_response.create(
        cid, items=[{"type": "message", "role": "user", "content": "note-from-support-c4e2"}]
    )
    assert (await support_event(engine, support, added.headers["x-request-id"]))[0] == "object.updated"
    items = await s.conversations.items.with_raw_response.list(cid)
    assert (await support_event(engine, support, items.headers["x-request-id"]))[0] == "object.read"

    async with support.http(tollgate.url) as http:
        listed = await http.get("/v1/conversations", params={"user": alice.user_id})
    assert [c["id"] for c in listed.json()["data"]] == [cid]
    assert await support_event(engine, support, listed.headers["x-request-id"]) == (
        "object.listed",
        "conversation",
        None,
        alice.user_id,
    )

    deleted = await s.conversations.with_raw_response.delete(cid)
    assert await support_event(engine, support, deleted.headers["x-request-id"]) == (
        "object.deleted",
        "conversation",
        cid,
        alice.user_id,
    )
    with pytest.raises(openai.NotFoundError):
        await a.conversations.retrieve(cid)
    await assert_nowhere_in_trail(engine, "note-from-support-c4e2")


async def test_ids_made_upstream_outside_tollgate_are_reachable_by_admins_only(
    tollgate: LiveServer, mock_upstream: LiveServer, admin: Admin, engine: AsyncEngine
) -> None:
    support, tenant = await new_admin(admin), await admin.tenant()
    s, t = support.client(tollgate.url), tenant.client(tollgate.url)
    async with _upstream_client(mock_upstream) as outside:
        file = await outside.files.create(file=("o.jsonl", JSONL, "application/jsonl"), purpose="batch")
        response = await outside.responses.create(model=MODEL, input="made outside")
        conversation = await outside.conversations.create()

    for call in (
        t.files.retrieve(file.id),
        t.responses.retrieve(response.id),
        t.conversations.retrieve(conversation.id),
    ):
        with pytest.raises(openai.NotFoundError):
            await call
    for target in (file.id, response.id, conversation.id):
        assert await audit_rows(engine, target_id=target) == []

    read = await s.files.with_raw_response.retrieve(file.id)
    assert read.parse().id == file.id
    assert await support_event(engine, support, read.headers["x-request-id"]) == ("object.read", "file", file.id, None)
    [event] = await audit_rows(engine, target_id=file.id)
    assert event.detail == {"owner": "unknown"}
    read_response = await s.responses.with_raw_response.retrieve(response.id)
    assert read_response.parse().id == response.id
    expected = ("object.read", "response", response.id, None)
    assert await support_event(engine, support, read_response.headers["x-request-id"]) == expected
    deleted = await s.conversations.with_raw_response.delete(conversation.id)
    assert deleted.parse().deleted is True
    expected = ("object.deleted", "conversation", conversation.id, None)
    assert await support_event(engine, support, deleted.headers["x-request-id"]) == expected
    deleted_file = await s.files.delete(file.id)
    assert deleted_file.deleted is True

    # An id upstream does not know either: upstream's 404, the attempt still on the record.
    missing = "file-doesnotexist0000"
    with pytest.raises(openai.NotFoundError):
        await s.files.retrieve(missing)
    [attempt] = await audit_rows(engine, target_id=missing)
    assert (attempt.action, attempt.owner_id, attempt.actor_user_id) == ("object.read", None, support.user_id)


async def test_other_tenants_still_get_404_and_leave_no_event(
    tollgate: LiveServer, admin: Admin, engine: AsyncEngine
) -> None:
    alice, bob = await admin.tenant(), await admin.tenant()
    a, b = alice.client(tollgate.url), bob.client(tollgate.url)
    file = await a.files.create(file=("a.jsonl", JSONL, "application/jsonl"), purpose="batch")
    response = await a.responses.create(model=MODEL, input="hi")
    conversation = await a.conversations.create()
    upload = await a.uploads.create(bytes=3, filename="x.jsonl", mime_type="text/jsonl", purpose="batch")
    for call in (
        b.files.retrieve(file.id),
        b.files.content(file.id),
        b.files.delete(file.id),
        b.responses.retrieve(response.id),
        b.responses.delete(response.id),
        b.responses.cancel(response.id),
        b.conversations.retrieve(conversation.id),
        b.conversations.update(conversation.id, metadata={}),
        b.conversations.delete(conversation.id),
        b.uploads.cancel(upload.id),
        b.files.list(extra_query={"user": alice.user_name}),
        b.files.list(extra_query={"user": "no-such-user"}),
    ):
        with pytest.raises(openai.NotFoundError):
            await call
    assert [e for e in await audit_rows(engine, owner_id=alice.user_id) if e.action.startswith("object.")] == []
    assert await audit_rows(engine, actor_user_id=bob.user_id) == []
    # Naming oneself is the caller's own list, as without ?user=.
    assert [f.id for f in (await a.files.list(extra_query={"user": alice.user_name})).data] == [file.id]
