"""The Conversations API end to end, owner-checked, plus Tollgate's own list of a caller's conversations."""

from __future__ import annotations

from collections.abc import Awaitable

import openai
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from tests.fixtures.live_server import LiveServer
from tests.fixtures.servers import PRICED_MODEL, Admin, Tenant, settled, usage_rows

MODEL = "gpt-4o-mini"


async def test_conversation_and_items_round_trip(tollgate: LiveServer, tenant: Tenant) -> None:
    client = tenant.client(tollgate.url)
    conversation = await client.conversations.create(
        metadata={"topic": "demo"}, items=[{"type": "message", "role": "user", "content": "Hello!"}]
    )
    assert conversation.id.startswith("conv_") and conversation.metadata == {"topic": "demo"}
    assert (await client.conversations.retrieve(conversation.id)).id == conversation.id
    updated = await client.conversations.update(conversation.id, metadata={"topic": "other"})
    assert updated.metadata == {"topic": "other"}

    added = await client.conversations.items.create(
        conversation.id, items=[{"type": "message", "role": "user", "content": "How are you?"}]
    )
    assert len(added.data) == 1
    listed = await client.conversations.items.list(conversation.id, order="asc")
    texts = [item.content[0].text for item in listed.data]  # type: ignore[union-attr,index]
    assert texts == ["Hello!", "How are you?"]
    added_id = str(added.data[0].id)
    item = await client.conversations.items.retrieve(added_id, conversation_id=conversation.id)
    assert item.id == added_id
    await client.conversations.items.delete(added_id, conversation_id=conversation.id)
    assert len((await client.conversations.items.list(conversation.id)).data) == 1

    deleted = await client.conversations.delete(conversation.id)
    assert (deleted.id, deleted.deleted) == (conversation.id, True)
    with pytest.raises(openai.NotFoundError):
        await client.conversations.retrieve(conversation.id)


async def test_a_response_in_the_callers_conversation_is_metered_and_kept(
    tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine
) -> None:
    client = tenant.client(tollgate.url)
    conversation = await client.conversations.create(items=[{"role": "user", "content": "My name is Ada."}])
    response = await client.responses.create(model=MODEL, input="What is my name?", conversation=conversation.id)
    assert response.usage is not None
    [row] = await usage_rows(engine, tenant.key_id)
    assert (row.endpoint, row.prompt_tokens) == ("responses", response.usage.input_tokens)
    items = await client.conversations.items.list(conversation.id, order="asc")
    assert [item.role for item in items.data] == ["user", "user", "assistant"]  # type: ignore[union-attr]


async def test_conversation_lists_are_per_user_newest_first_and_paginated(tollgate: LiveServer, admin: Admin) -> None:
    alice, bob = await admin.tenant(), await admin.tenant()
    a = alice.client(tollgate.url)
    ids = [(await a.conversations.create(metadata={"n": str(i)})).id for i in range(3)]
    await bob.client(tollgate.url).conversations.create()
    async with alice.http(tollgate.url) as http:
        listed = (await http.get("/v1/conversations")).json()
        assert [c["id"] for c in listed["data"]] == ids[::-1]
        assert listed["data"][0]["metadata"] == {"n": "2"} and listed["data"][0]["object"] == "conversation"
        page = (await http.get("/v1/conversations", params={"limit": 2})).json()
        assert ([c["id"] for c in page["data"]], page["has_more"]) == (ids[:0:-1], True)
        rest = (await http.get("/v1/conversations", params={"limit": 2, "after": page["last_id"]})).json()
        assert ([c["id"] for c in rest["data"]], rest["has_more"]) == ([ids[0]], False)
    async with bob.http(tollgate.url) as http:
        assert len((await http.get("/v1/conversations")).json()["data"]) == 1
        # A cursor naming Alice's conversation is no way in.
        assert (await http.get("/v1/conversations", params={"after": ids[0]})).status_code == 400


async def test_other_users_conversation_ids_are_404_on_every_route(
    tollgate: LiveServer, admin: Admin, engine: AsyncEngine, mock_app: Starlette
) -> None:
    alice, bob = await admin.tenant(), await admin.tenant()
    a, b = alice.client(tollgate.url), bob.client(tollgate.url)
    conversation = await a.conversations.create(items=[{"role": "user", "content": "private"}])
    [item] = (await a.conversations.items.list(conversation.id)).data
    item_id = str(item.id)
    before = len(mock_app.state.requests)

    calls: list[Awaitable[object]] = [
        b.conversations.retrieve(conversation.id),
        b.conversations.update(conversation.id, metadata={"x": "y"}),
        b.conversations.items.create(conversation.id, items=[{"role": "user", "content": "hi"}]),
        b.conversations.items.list(conversation.id),
        b.conversations.items.retrieve(item_id, conversation_id=conversation.id),
        b.conversations.items.delete(item_id, conversation_id=conversation.id),
        b.conversations.delete(conversation.id),
        b.responses.create(model=MODEL, input="hi", conversation=conversation.id),
        b.responses.create(model=MODEL, input="hi", conversation={"id": conversation.id}),
    ]
    for call in calls:
        with pytest.raises(openai.NotFoundError):
            await call
    assert len(mock_app.state.requests) == before, "refused before upstream"
    assert await usage_rows(engine, bob.key_id) == []
    assert (await a.conversations.retrieve(conversation.id)).metadata == {}
    assert len((await a.conversations.items.list(conversation.id)).data) == 1


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("", {"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ("", {"items": [{"role": "user", "content": "x"}] * 21}, "items"),
        ("", {"items": [{"type": "input_file", "file_id": "file_x"}]}, "items[0]"),
        ("/{id}", {}, "metadata"),
        ("/{id}/items", {"items": []}, "items"),
    ],
)
async def test_bad_input_is_a_400(
    tollgate: LiveServer, tenant: Tenant, mock_app: Starlette, path: str, body: dict[str, object], param: str
) -> None:
    conversation = await tenant.client(tollgate.url).conversations.create()
    before = len(mock_app.state.requests)
    async with tenant.http(tollgate.url) as http:
        answer = await http.post("/v1/conversations" + path.format(id=conversation.id), json=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == param
    assert len(mock_app.state.requests) == before


async def test_the_reservation_covers_the_conversations_items(
    tollgate: LiveServer, admin: Admin, mock_app: Starlette
) -> None:
    """With a budget, the output cap is what the budget can pay for after the prompt; a response in a
    conversation carries its items as input, whether given at creation or added later."""
    tenant = await admin.tenant()
    await admin.budget("key", tenant.key_id, "0.002")
    client = tenant.client(tollgate.url)
    long_item = {"role": "user", "content": "word " * 150}
    at_creation = await client.conversations.create(items=[long_item])  # type: ignore[list-item]
    added_later = await client.conversations.create()
    await client.conversations.items.create(added_later.id, items=[long_item])  # type: ignore[list-item]
    caps = []
    for conversation in (None, at_creation.id, added_later.id):
        await settled()  # each call reserves all the budget can pay for until it is settled
        await client.responses.create(
            model=PRICED_MODEL, input="Go on.", conversation=conversation, extra_body={"mock": {"words": 1}}
        )
        caps.append(mock_app.state.requests[-1].body["max_output_tokens"])
    # 150+ input tokens at $2/M leave 37.5 fewer output tokens at $8/M; the earlier calls' own
    # spend lowers each later cap by only a few.
    assert caps[0] - caps[1] >= 150 * 2 / 8, caps
    assert caps[0] - caps[2] >= 150 * 2 / 8, caps
