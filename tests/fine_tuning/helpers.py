from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import openai
from openai.types.fine_tuning import FineTuningJob
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.models import FineTuningJob as JobRow
from app.models import UsageRecord
from tests.fine_tuning.data import good_file

T = TypeVar("T")
# gpt-4o-mini's built-in training price: $3 per million tokens is 3 micro-dollars per token.
TRAINING_MICROS_PER_TOKEN = 3


async def upload(client: openai.AsyncOpenAI, data: bytes | None = None) -> str:
    created = await client.files.create(file=("train.jsonl", data or good_file(12)), purpose="fine-tune")
    return created.id


async def create_job(client: openai.AsyncOpenAI, file_id: str | None = None, **kwargs: Any) -> FineTuningJob:
    file_id = file_id or await upload(client)
    return await client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=file_id, **kwargs)


async def run_to_end(client: openai.AsyncOpenAI, job_id: str) -> FineTuningJob:
    """Reads the job until it has finished (the mock moves it one step per read)."""
    for _ in range(10):
        job = await client.fine_tuning.jobs.retrieve(job_id)
        if job.status in ("succeeded", "failed", "cancelled"):
            return job
    raise AssertionError(f"job {job_id} did not finish")


async def eventually(probe: Callable[[], Awaitable[T | None]], timeout_s: float = 20) -> T:
    """Waits for background work (the poller) to have happened; a deadline, not a timing claim."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await probe()
        if value is not None:
            return value
        assert time.monotonic() < deadline, "the background work did not happen"
        await asyncio.sleep(0.05)


async def ledger_row(engine: AsyncEngine, request_id: str) -> UsageRecord | None:
    async with engine.connect() as conn:
        row = (await conn.execute(select(UsageRecord.__table__).where(UsageRecord.request_id == request_id))).first()
    return UsageRecord(**row._mapping) if row else None


async def job_rows(engine: AsyncEngine, user_id: str) -> list[JobRow]:
    async with engine.connect() as conn:
        result = await conn.execute(select(JobRow.__table__).where(JobRow.user_id == user_id))
        return [JobRow(**row._mapping) for row in result]


def figures(job: FineTuningJob) -> dict[str, Any]:
    """Tollgate's own figures on a job object: tokens, epochs, estimate, charge."""
    return cast(dict[str, Any], job.to_dict()["tollgate"])
