"""The big exactness run: several Tollgate processes on one PostgreSQL (and Redis), thousands of
concurrent requests against a small budget, client disconnects, and kill -9 of a replica in the
middle; then the invariants are checked and printed.

    DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/test \\
    TIKTOKEN_CACHE_DIR=../shared/tiktoken python bench/exactness.py --replicas 3 --requests 3000

The database must already be migrated (`tollgate migrate`). Everything runs on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import openai
from openai.types.chat import ChatCompletionMessageParam
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.mock_upstream.server import MockConfig, create_mock_app
from app.models import BudgetLease, UsageRecord
from tests.fixtures.live_server import LiveServer
from tests.fixtures.processes import TollgateProcess, replica_env
from tests.fixtures.servers import ADMIN_KEY, PRICED_MODEL, UPSTREAM_KEY

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Count to three."}]


async def one(client: openai.AsyncOpenAI, rng: random.Random) -> str:
    mode = rng.choice(["json", "stream", "disconnect"])
    mock = {"delay_ms": rng.randint(0, 50), "chunk_delay_ms": 5, "words": rng.randint(5, 40)}
    try:
        if mode == "json":
            await client.chat.completions.create(
                model=PRICED_MODEL, messages=MESSAGES, max_tokens=50, extra_body={"mock": mock}
            )
            return "ok"
        stream = await client.chat.completions.create(
            model=PRICED_MODEL, messages=MESSAGES, max_tokens=50, stream=True, extra_body={"mock": mock}
        )
        received = 0
        async for _ in stream:
            received += 1
            if mode == "disconnect" and received == 3:
                await stream.close()
                return "disconnected"
        return "ok"
    except openai.RateLimitError as exc:
        return str(exc.code)
    except openai.APIError as exc:
        return type(exc).__name__


async def main(args: argparse.Namespace) -> int:
    database_url = os.environ.get("DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    mock = LiveServer(create_mock_app(MockConfig(api_key=UPSTREAM_KEY)))
    mock.start()
    extra = {"REDIS_URL": args.redis} if args.redis else {}
    env = replica_env(database_url, mock.url, TOLLGATE_LEASE_TTL_S="3", **extra)
    workdir = Path(tempfile.mkdtemp(prefix="tollgate-exactness-"))
    replicas = [TollgateProcess(workdir, env, "--skip-migrations", wait=False) for _ in range(args.replicas)]
    for replica in replicas:
        replica.wait_ready()
    admin = httpx.AsyncClient(base_url=replicas[0].url, headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=30)
    tag = f"exact-{int(time.time())}"
    team = (await admin.post("/admin/teams", json={"name": tag})).json()
    keys = []
    for i in range(args.replicas):
        await admin.post("/admin/users", json={"name": f"{tag}-{i}", "team": tag})
        keys.append((await admin.post("/admin/keys", json={"user": f"{tag}-{i}"})).json())
    budget = (
        await admin.post(
            "/admin/budgets", json={"scope": "team", "scope_id": team["id"], "period": "daily", "limit_usd": args.limit}
        )
    ).json()

    rng = random.Random(args.seed)
    clients = [
        openai.AsyncOpenAI(base_url=r.url + "/v1", api_key=k["key"], max_retries=0, timeout=60)
        for r, k in zip(replicas, keys, strict=True)
    ]
    started = time.monotonic()
    tasks = [asyncio.create_task(one(clients[i % len(clients)], rng)) for i in range(args.requests)]
    if args.kill:
        await asyncio.sleep(1.0)
        replicas[-1].kill9()
        print(f"killed replica on port {replicas[-1].port} with SIGKILL", flush=True)
    outcomes = Counter(await asyncio.gather(*tasks))
    elapsed = time.monotonic() - started
    if args.kill:
        replicas[-1] = TollgateProcess(workdir, env, "--skip-migrations")

    engine = create_async_engine(database_url)
    key_ids = [k["id"] for k in keys]
    for _ in range(200):  # let settlements and the reaper finish
        async with engine.connect() as conn:
            leases = (await conn.execute(select(func.count()).select_from(BudgetLease))).scalar_one()
        if leases == 0:
            break
        await asyncio.sleep(0.1)
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(func.count(), func.coalesce(func.sum(UsageRecord.cost_micros), 0), UsageRecord.status)
                .where(UsageRecord.api_key_id.in_(key_ids))
                .group_by(UsageRecord.status)
            )
        ).all()
    state = (await admin.get(f"/admin/budgets/{budget['id']}")).json()
    ledger_sum = sum(int(r[1]) for r in rows)
    print(f"requests: {args.requests} in {elapsed:.1f} s across {args.replicas} replicas -> {dict(outcomes)}")
    print("ledger rows by status:", {r[2]: int(r[0]) for r in rows})
    print(f"budget limit {state['limit_micros']} spent {state['spent_micros']} reserved {state['reserved_micros']}")
    print(f"ledger sum {ledger_sum}; open leases {leases}")
    ok = (
        state["spent_micros"] <= state["limit_micros"]
        and state["spent_micros"] == ledger_sum
        and state["reserved_micros"] == 0
        and leases == 0
    )
    print("INVARIANTS HOLD" if ok else "INVARIANT VIOLATED")
    for client in clients:
        await client.close()
    await admin.aclose()
    await engine.dispose()
    for replica in replicas:
        replica.stop()
    mock.stop()
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--limit", default="0.05", help="team budget in dollars")
    parser.add_argument("--kill", action="store_true", help="kill -9 one replica one second in")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--seed", type=int, default=7)
    sys.exit(asyncio.run(main(parser.parse_args())))
