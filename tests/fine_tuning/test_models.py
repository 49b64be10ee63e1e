"""Fine-tuned models: usable by their owner and whoever an admin grants them to, priced at the
base model's fine-tuned price; and the poller settling jobs that no client reads."""

from __future__ import annotations

import asyncio
import math
from decimal import Decimal

import openai
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import DEFAULT_FINE_TUNABLE
from app.models import UsageRecord
from tests.fine_tuning.data import tokens_of
from tests.fine_tuning.helpers import TRAINING_MICROS_PER_TOKEN, create_job, eventually, ledger_row, run_to_end
from tests.fixtures.live_server import LiveServer
from tests.fixtures.servers import Admin, usage_rows

HELLO = [{"role": "user", "content": "Say hello"}]


def _chat_cost(row: UsageRecord) -> int:
    entry = DEFAULT_FINE_TUNABLE["gpt-4o-mini"]
    assert entry.input_per_mtok is not None and entry.output_per_mtok is not None
    return math.ceil(row.prompt_tokens * entry.input_per_mtok + row.completion_tokens * entry.output_per_mtok)


async def test_the_model_is_its_owners_and_whoever_an_admin_grants(
    tollgate: LiveServer, admin: Admin, engine: AsyncEngine
) -> None:
    team = (await admin.http.post("/admin/teams", json={"name": f"ft-team-{id(engine)}"})).json()
    owner, other, teammate = await admin.tenant(), await admin.tenant(), await admin.tenant(team=team["name"])
    job = await run_to_end(owner.client(tollgate.url), (await create_job(owner.client(tollgate.url))).id)
    model = job.fine_tuned_model
    assert model is not None

    reply = await owner.client(tollgate.url).chat.completions.create(model=model, messages=HELLO)  # type: ignore[arg-type]
    assert reply.model == model
    [row] = [r for r in await usage_rows(engine, owner.key_id) if r.endpoint == "chat.completions"]
    assert row.model == model and row.cost_micros == _chat_cost(row) > 0
    assert Decimal(row.cost_micros) > Decimal(row.prompt_tokens) * Decimal("0.15")  # not gpt-4o-mini's own price

    for tenant in (other, teammate):
        with pytest.raises(openai.NotFoundError) as caught:
            await tenant.client(tollgate.url).chat.completions.create(model=model, messages=HELLO)  # type: ignore[arg-type]
        assert caught.value.code == "model_not_found"
        assert caught.value.body["message"] == f"The model `{model}` does not exist or you do not have access to it."  # type: ignore[index]

    granted = await admin.http.post(
        f"/admin/fine-tuned-models/{model}/grants", json={"scope": "user", "scope_id": other.user_name}
    )
    assert granted.status_code == 201, granted.text
    assert granted.json() == {
        "object": "fine_tuned_model.grant",
        "model": model,
        "scope": "user",
        "scope_id": other.user_id,
    }
    team_grant = await admin.http.post(
        f"/admin/fine-tuned-models/{model}/grants", json={"scope": "team", "scope_id": team["id"]}
    )
    assert team_grant.status_code == 201, team_grant.text
    for tenant in (other, teammate):
        await tenant.client(tollgate.url).chat.completions.create(model=model, messages=HELLO)  # type: ignore[arg-type]
    listed = (await admin.http.get("/admin/fine-tuned-models")).json()["data"]
    [view] = [m for m in listed if m["id"] == model]
    assert (view["owner"], view["base_model"], view["job_id"]) == (owner.user_id, "gpt-4o-mini", job.id)
    assert (view["users"], view["teams"]) == ([other.user_id], [team["id"]])

    revoked = await admin.http.delete(f"/admin/fine-tuned-models/{model}/grants/user/{other.user_id}")
    assert revoked.status_code == 204
    with pytest.raises(openai.NotFoundError):
        await other.client(tollgate.url).chat.completions.create(model=model, messages=HELLO)  # type: ignore[arg-type]
    member = await other.http(tollgate.url).__aenter__()
    try:
        refused = await member.post(
            f"/admin/fine-tuned-models/{model}/grants", json={"scope": "user", "scope_id": other.user_id}
        )
        assert refused.status_code == 403
    finally:
        await member.aclose()


async def test_an_unknown_fine_tuned_model_is_404_not_a_price_error(tollgate: LiveServer, admin: Admin) -> None:
    client = (await admin.tenant()).client(tollgate.url)
    with pytest.raises(openai.NotFoundError) as caught:
        await client.chat.completions.create(model="ft:gpt-4o-mini:someone::abc", messages=HELLO)  # type: ignore[arg-type]
    assert caught.value.code == "model_not_found"


async def test_the_poller_settles_a_job_no_client_reads(
    polling_tollgate: LiveServer, admin: Admin, engine: AsyncEngine
) -> None:
    tenant = await admin.tenant()
    budget = await admin.budget("user", tenant.user_id, "10")
    client = tenant.client(polling_tollgate.url)
    job = await create_job(client, hyperparameters={"n_epochs": 2})
    row = await eventually(lambda: ledger_row(engine, job.id))
    expected = tokens_of(12) * 2 * TRAINING_MICROS_PER_TOKEN
    assert (row.cost_micros, row.units, row.status) == (expected, tokens_of(12) * 2, "ok")
    state = await admin.budget_state(budget)
    assert (state["reserved_micros"], state["spent_micros"]) == (0, expected)
    # The model it made is usable at once on the replica that saw the job finish.
    done = await client.fine_tuning.jobs.retrieve(job.id)
    assert done.status == "succeeded" and done.fine_tuned_model is not None
    await client.chat.completions.create(model=done.fine_tuned_model, messages=HELLO)  # type: ignore[arg-type]


async def test_two_replicas_reading_a_finished_job_at_once_charge_it_once(
    tollgate: LiveServer, polling_tollgate: LiveServer, admin: Admin, engine: AsyncEngine
) -> None:
    tenant = await admin.tenant()
    budget = await admin.budget("user", tenant.user_id, "10")
    one, other = tenant.client(tollgate.url), tenant.client(polling_tollgate.url)
    job = await create_job(one, hyperparameters={"n_epochs": 1}, extra_body={"mock": {"steps": 1}})
    # The first read finishes the job upstream; every read after it sees it finished. Both replicas
    # (and the fast one's poller) race to settle it.
    reads = [c.fine_tuning.jobs.retrieve(job.id) for c in (one, other, one, other, one, other)]
    seen = await asyncio.gather(*reads)
    assert {j.status for j in seen} == {"succeeded"}
    expected = tokens_of(12) * TRAINING_MICROS_PER_TOKEN
    rows = [r for r in await usage_rows(engine, tenant.key_id) if r.endpoint == "fine_tuning.jobs"]
    assert [(r.request_id, r.cost_micros) for r in rows] == [(job.id, expected)]
    state = await admin.budget_state(budget)
    assert (state["reserved_micros"], state["spent_micros"]) == (0, expected)
