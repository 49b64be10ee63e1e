"""Assistants, threads and messages served by Tollgate, driven with the official SDK's beta clients."""

from __future__ import annotations

from collections.abc import Awaitable

import httpx
import openai
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.models import ThreadMessage, ThreadRun
from tests.fixtures.live_server import LiveServer
from tests.fixtures.servers import ADMIN_KEY, Admin, Tenant

MODEL = "gpt-4o-mini"


async def test_assistant_thread_and_messages_round_trip(tollgate: LiveServer, tenant: Tenant) -> None:
    client = tenant.client(tollgate.url)
    assistant = await client.beta.assistants.create(
        model=MODEL,
        name="Math tutor",
        instructions="You are a personal math tutor.",
        tools=[{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}],
        metadata={"team": "edu"},
        temperature=0.2,
    )
    assert assistant.id.startswith("asst_") and assistant.object == "assistant"
    assert (assistant.name, assistant.model, assistant.metadata) == ("Math tutor", MODEL, {"team": "edu"})
    assert assistant.tools[0].type == "function"

    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "What is 2 + 2?"}])
    message = await client.beta.threads.messages.create(
        thread.id, role="user", content=[{"type": "text", "text": "And 3 + 3?"}], metadata={"n": "2"}
    )
    assert message.thread_id == thread.id and message.status == "completed"
    assert message.content[0].type == "text" and message.content[0].text.value == "And 3 + 3?"

    listed = await client.beta.threads.messages.list(thread.id, order="asc")
    assert [m.content[0].text.value for m in listed.data] == ["What is 2 + 2?", "And 3 + 3?"]  # type: ignore[union-attr]

    updated = await client.beta.assistants.update(assistant.id, name="Tutor", metadata={})
    assert (updated.name, updated.metadata, updated.instructions) == ("Tutor", {}, assistant.instructions)
    assert (await client.beta.assistants.retrieve(assistant.id)).name == "Tutor"
    assert (await client.beta.threads.update(thread.id, metadata={"k": "v"})).metadata == {"k": "v"}
    assert (await client.beta.threads.messages.retrieve(message.id, thread_id=thread.id)).id == message.id
    deleted = await client.beta.assistants.delete(assistant.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (assistant.id, True, "assistant.deleted")


async def test_cursor_pagination_walks_every_message_once(tollgate: LiveServer, tenant: Tenant) -> None:
    client = tenant.client(tollgate.url)
    thread = await client.beta.threads.create()
    sent = [f"m{i}" for i in range(7)]
    for text in sent:
        await client.beta.threads.messages.create(thread.id, role="user", content=text)

    seen: list[str] = []
    async for message in client.beta.threads.messages.list(thread.id, order="asc", limit=3):  # follows `after`
        seen.append(message.content[0].text.value)  # type: ignore[union-attr]
    assert seen == sent

    newest = await client.beta.threads.messages.list(thread.id, limit=2)
    assert [m.content[0].text.value for m in newest.data] == ["m6", "m5"]  # type: ignore[union-attr]
    assert newest.has_more
    back = await client.beta.threads.messages.list(thread.id, limit=2, before=newest.data[-1].id)
    assert [m.content[0].text.value for m in back.data] == ["m6"]  # type: ignore[union-attr]


async def test_other_users_ids_are_404_on_every_route(tollgate: LiveServer, admin: Admin) -> None:
    alice, bob = await admin.tenant(), await admin.tenant()
    a, b = alice.client(tollgate.url), bob.client(tollgate.url)
    assistant = await a.beta.assistants.create(model=MODEL)
    thread = await a.beta.threads.create(messages=[{"role": "user", "content": "private"}])
    [message] = (await a.beta.threads.messages.list(thread.id)).data

    calls: list[Awaitable[object]] = [
        b.beta.assistants.retrieve(assistant.id),
        b.beta.assistants.update(assistant.id, name="x"),
        b.beta.assistants.delete(assistant.id),
        b.beta.threads.retrieve(thread.id),
        b.beta.threads.update(thread.id, metadata={"x": "y"}),
        b.beta.threads.messages.create(thread.id, role="user", content="hi"),
        b.beta.threads.messages.list(thread.id),
        b.beta.threads.messages.retrieve(message.id, thread_id=thread.id),
        b.beta.threads.messages.update(message.id, thread_id=thread.id, metadata={}),
        b.beta.threads.messages.delete(message.id, thread_id=thread.id),
        b.beta.threads.delete(thread.id),
    ]
    for call in calls:
        with pytest.raises(openai.NotFoundError):
            await call
    # Nothing of Alice's changed.
    assert (await a.beta.threads.retrieve(thread.id)).metadata == {}
    assert len((await a.beta.threads.messages.list(thread.id)).data) == 1
    assert (await b.beta.assistants.list()).data == []
    with pytest.raises(openai.BadRequestError):  # a cursor naming Alice's object is no way in either
        await b.beta.assistants.list(after=assistant.id)


async def test_thread_lists_are_per_user_newest_first_and_filterable(tollgate: LiveServer, admin: Admin) -> None:
    alice, bob = await admin.tenant(), await admin.tenant()
    headers = {"authorization": f"Bearer {alice.token}"}
    ids = [(await alice.client(tollgate.url).beta.threads.create(metadata={"n": str(i)})).id for i in range(3)]
    await bob.client(tollgate.url).beta.threads.create()
    async with httpx.AsyncClient(base_url=tollgate.url, headers=headers) as http:
        listed = (await http.get("/v1/threads")).json()
        assert [t["id"] for t in listed["data"]] == ids[::-1]
        assert (listed["object"], listed["has_more"], listed["first_id"]) == ("list", False, ids[2])
        filtered = (await http.get("/v1/threads", params={"metadata[n]": "1"})).json()
        assert [t["id"] for t in filtered["data"]] == [ids[1]]
    async with httpx.AsyncClient(base_url=tollgate.url, headers={"authorization": f"Bearer {ADMIN_KEY}"}) as http:
        as_admin = (await http.get(f"/admin/users/{alice.user_name}/threads", params={"order": "asc"})).json()
        assert [t["id"] for t in as_admin["data"]] == ids
        assert (await http.get("/admin/users/nobody-at-all/threads")).status_code == 404


async def test_deleting_a_thread_deletes_its_messages_and_runs(
    tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine
) -> None:
    client = tenant.client(tollgate.url)
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "a"}] * 3)
    assistant = await client.beta.assistants.create(model=MODEL)
    await client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    assert (await client.beta.threads.delete(thread.id)).deleted
    async with engine.connect() as conn:
        messages = await conn.scalar(select(func.count()).where(ThreadMessage.thread_id == thread.id))
        runs = await conn.scalar(select(func.count()).where(ThreadRun.thread_id == thread.id))
    assert (messages, runs) == (0, 0)
    with pytest.raises(openai.NotFoundError):
        await client.beta.threads.retrieve(thread.id)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": MODEL, "tools": [{"type": "code_interpreter"}]}, "tools"),
        ({"model": MODEL, "metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ({"model": MODEL, "temperature": 3}, "temperature"),
        ({"model": MODEL, "surprise": True}, "surprise"),
        ({"name": "no model"}, "model"),
    ],
)
async def test_bad_assistants_are_400_and_not_stored(
    tollgate: LiveServer, tenant: Tenant, body: dict[str, object], param: str
) -> None:
    async with httpx.AsyncClient(base_url=tollgate.url, headers={"authorization": f"Bearer {tenant.token}"}) as http:
        response = await http.post("/v1/assistants", json=body)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == param
        assert (await http.get("/v1/assistants")).json()["data"] == []


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ([{"type": "image_file", "image_file": {"file_id": "file-1"}}], "image_file"),
        ([], "empty"),
        ([{"type": "text", "text": 3}], "string"),
    ],
)
async def test_bad_messages_are_400_and_not_stored(
    tollgate: LiveServer, tenant: Tenant, content: object, fragment: str
) -> None:
    client = tenant.client(tollgate.url)
    thread = await client.beta.threads.create()
    async with httpx.AsyncClient(base_url=tollgate.url, headers={"authorization": f"Bearer {tenant.token}"}) as http:
        response = await http.post(f"/v1/threads/{thread.id}/messages", json={"role": "user", "content": content})
        assert response.status_code == 400, response.text
        assert fragment in response.json()["error"]["message"]
        assert response.json()["error"]["param"] == "content"
        created = await http.post("/v1/assistants", json={"model": MODEL})
        assert created.status_code == 200
        nulled = await http.post(f"/v1/assistants/{created.json()['id']}", json={"model": None})
        assert nulled.status_code == 400 and nulled.json()["error"]["param"] == "model"
    assert (await client.beta.threads.messages.list(thread.id)).data == []


async def test_an_assistant_needs_a_model_the_key_may_use(tollgate: LiveServer, admin: Admin) -> None:
    tenant = await admin.tenant(models=["gpt-4o-mini"])
    with pytest.raises(openai.NotFoundError) as caught:
        await tenant.client(tollgate.url).beta.assistants.create(model="gpt-4o")
    assert caught.value.code == "model_not_found"
