"""Budget administration over the admin API."""

from __future__ import annotations

import pytest

from tests.fixtures.servers import Admin


async def test_budget_lifecycle(admin: Admin) -> None:
    tenant = await admin.tenant()
    budget_id = await admin.budget("user", tenant.user_name, "12.50", period="daily", soft_limit_usd="10")
    state = await admin.budget_state(budget_id)
    assert state["scope_id"] == tenant.user_id, "names resolve to ids"
    assert (state["limit_micros"], state["limit_usd"], state["remaining_micros"]) == (
        12_500_000,
        "12.500000",
        12_500_000,
    )
    assert state["timezone"] == "UTC"
    assert state["period_end"] is not None
    assert state["soft_limit_reached"] is False

    changed = await admin.http.patch(f"/admin/budgets/{budget_id}", json={"limit_usd": "20", "timezone": "Asia/Tokyo"})
    assert changed.status_code == 200
    assert (changed.json()["limit_micros"], changed.json()["timezone"]) == (20_000_000, "Asia/Tokyo")

    listed = await admin.http.get("/admin/budgets", params={"scope": "user", "scope_id": tenant.user_name})
    assert [b["id"] for b in listed.json()["data"]] == [budget_id]

    assert (await admin.http.delete(f"/admin/budgets/{budget_id}")).status_code == 204
    assert (await admin.http.get(f"/admin/budgets/{budget_id}")).status_code == 404


async def test_one_budget_per_scope_and_period(admin: Admin) -> None:
    tenant = await admin.tenant()
    await admin.budget("key", tenant.key_id, "1")
    again = await admin.http.post(
        "/admin/budgets", json={"scope": "key", "scope_id": tenant.key_id, "period": "monthly", "limit_usd": "2"}
    )
    assert again.status_code == 409


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"scope": "key", "scope_id": "key_nope", "period": "daily", "limit_usd": "1"}, 404, "key_id"),
        ({"scope": "org", "scope_id": "x", "period": "daily", "limit_usd": "1"}, 400, "scope"),
        ({"scope": "user", "scope_id": "admin", "period": "hourly", "limit_usd": "1"}, 400, "period"),
        ({"scope": "user", "scope_id": "admin", "period": "daily", "limit_usd": "-1"}, 400, "limit_usd"),
        ({"scope": "user", "scope_id": "admin", "period": "daily", "limit_usd": "0.0000001"}, 400, None),
        (
            {"scope": "user", "scope_id": "admin", "period": "daily", "limit_usd": "1", "timezone": "Mars/Base"},
            400,
            "timezone",
        ),
        ({"scope": "user", "scope_id": "admin", "period": "daily", "limit_usd": "1", "soft_limit_usd": "2"}, 400, None),
    ],
)
async def test_bad_budgets_are_refused(admin: Admin, body: dict[str, str], status: int, param: str | None) -> None:
    response = await admin.http.post("/admin/budgets", json=body)
    assert response.status_code == status, response.text
    if param is not None:
        assert response.json()["error"]["param"] == param


async def test_patch_validates(admin: Admin) -> None:
    tenant = await admin.tenant()
    budget_id = await admin.budget("key", tenant.key_id, "5", soft_limit_usd="4")
    assert (await admin.http.patch(f"/admin/budgets/{budget_id}", json={"limit_usd": "3"})).status_code == 400
    assert (await admin.http.patch(f"/admin/budgets/{budget_id}", json={"limit_usd": None})).status_code == 400
    assert (await admin.http.patch("/admin/budgets/budget_nope", json={"limit_usd": "3"})).status_code == 404
