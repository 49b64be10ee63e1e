"""Group commit and shared calls: what the money path relies on to batch its database work."""

from __future__ import annotations

import asyncio
import logging

import pytest

from app.kit.batching import BatchCall, GroupCommit


async def test_group_commit_writes_everything_once_in_few_flushes() -> None:
    written: list[list[int]] = []

    async def flush(items: list[int]) -> None:
        await asyncio.sleep(0.01)  # a round trip: more items arrive meanwhile
        written.append(items)

    commit: GroupCommit[int] = GroupCommit(flush)
    for i in range(5):
        commit.submit(i)
    await asyncio.sleep(0)
    for i in range(5, 100):
        commit.submit(i)
    assert not commit.idle
    await commit.wait_idle()
    assert sorted(i for batch in written for i in batch) == list(range(100))
    assert len(written) == commit.flushes <= 3


async def test_lingering_gathers_what_arrives_within_the_window() -> None:
    written: list[list[int]] = []

    async def flush(items: list[int]) -> None:
        written.append(items)

    commit: GroupCommit[int] = GroupCommit(flush, linger_s=0.05)
    commit.submit(1)
    await asyncio.sleep(0.01)
    commit.submit(2)
    await commit.wait_idle()
    assert written == [[1, 2]]


async def test_a_failing_flush_is_logged_and_does_not_stop_later_ones(caplog: pytest.LogCaptureFixture) -> None:
    written: list[int] = []

    async def flush(items: list[int]) -> None:
        if 0 in items:
            raise RuntimeError("boom")
        written.extend(items)

    commit: GroupCommit[int] = GroupCommit(flush)
    commit.submit(0)
    await commit.wait_idle()
    commit.submit(1)
    await commit.wait_idle()
    assert written == [1]
    assert any("dropped a batch of 1" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)


async def test_batch_call_answers_each_caller_with_its_own_result() -> None:
    sizes: list[int] = []

    async def call(items: list[int]) -> list[int]:
        sizes.append(len(items))
        await asyncio.sleep(0.01)
        return [i * 10 for i in items]

    shared: BatchCall[int, int] = BatchCall(call)
    assert await shared(-1) == -10, "a lone call goes out at once, with no timer to wait for"
    first = asyncio.create_task(shared(0))
    await asyncio.sleep(0.001)  # its batch is in flight; the rest queue behind it
    results = await asyncio.gather(first, *(shared(i) for i in range(1, 50)))
    assert results == [i * 10 for i in range(50)]
    assert sizes == [1, 1, 49]


async def test_batch_call_failure_reaches_every_caller_of_that_batch() -> None:
    async def call(items: list[int]) -> list[int]:
        raise ConnectionError("database away")

    shared: BatchCall[int, int] = BatchCall(call)
    outcomes = await asyncio.gather(shared(1), shared(2), return_exceptions=True)
    assert all(isinstance(o, ConnectionError) for o in outcomes)


async def test_a_caller_that_gave_up_gets_its_result_undone() -> None:
    orphans: list[tuple[int, str]] = []
    started = asyncio.Event()

    async def call(items: list[int]) -> list[str]:
        started.set()
        await asyncio.sleep(0.05)
        return [f"reserved {i}" for i in items]

    shared: BatchCall[int, str] = BatchCall(call, on_orphan=lambda item, result: orphans.append((item, result)))
    waiting = asyncio.create_task(shared(7))
    staying = asyncio.create_task(shared(8))
    await started.wait()
    waiting.cancel()
    assert await staying == "reserved 8"
    assert orphans == [(7, "reserved 7")]
