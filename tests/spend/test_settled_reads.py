"""Tollgate answers before it writes the settlement; reads of spend must not show the gap."""

from __future__ import annotations

import httpx
from openai.types.chat import ChatCompletionMessageParam

from app.config import Settings
from app.main import create_app
from tests.fixtures.live_server import LiveServer
from tests.fixtures.servers import ADMIN_KEY, PRICED_MODEL, Admin, make_settings

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]


async def test_me_and_admin_budget_reads_include_every_answered_request(
    settings: Settings, mock_upstream: LiveServer, admin: Admin
) -> None:
    lingering = make_settings(settings.database.url, mock_upstream.url)
    lingering.spend.settle_linger_s = 0.5  # the settlement waits half a second for company
    tenant = await admin.tenant()
    budget_id = await admin.budget("key", tenant.key_id, "1")
    with LiveServer(create_app(lingering)) as server:
        await tenant.client(server.url).chat.completions.create(model=PRICED_MODEL, messages=MESSAGES, max_tokens=5)
        async with httpx.AsyncClient(base_url=server.url) as http:
            me = (await http.get("/v1/me", headers={"authorization": f"Bearer {tenant.token}"})).json()
            admin_view = (
                await http.get(f"/admin/budgets/{budget_id}", headers={"authorization": f"Bearer {ADMIN_KEY}"})
            ).json()
    [budget] = me["budgets"]
    assert (budget["reserved_micros"], budget["spent_micros"] > 0) == (0, True)
    assert (admin_view["reserved_micros"], admin_view["spent_micros"]) == (0, budget["spent_micros"])
