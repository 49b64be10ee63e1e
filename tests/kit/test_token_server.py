"""The token server: one process holds tiktoken's tables, workers count through it exactly as
they would in process, and a worker whose server is gone counts in process until it is back."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import tiktoken

from app.cli import tokenizer
from app.cli.tokenizer import token_server
from app.kit import token_client, tokens
from app.kit.token_server import HEADER, Garbled, pack_request, take_frame

ROOT = Path(__file__).resolve().parents[2]
TEXTS = ["hello world", "Grüße, 世界! 🙂 " * 50, "a lone \ud800 surrogate", "<|endoftext|> is text here", ""]


@pytest.fixture
def server() -> Iterator[str]:
    with token_server(True) as path:
        assert path is not None
        tokens.use_token_server(path)
        tokens.load_encoding.cache_clear()
        try:
            yield path
        finally:
            tokens.use_token_server(None)


def _wait_for(condition: object, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.05)
    pytest.fail("the condition did not hold in time")


def _server_pids() -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(os.getpid()), "-f", "app.kit.token_server"], capture_output=True)
    return [int(p) for p in found.stdout.split()]


def test_counts_through_the_server_equal_tiktokens_own_and_load_nothing_here(server: str) -> None:
    for model, name in (("gpt-4o-mini", "o200k_base"), ("text-embedding-3-small", "cl100k_base")):
        full = tiktoken.get_encoding(name)
        expected = [len(full.encode(t, disallowed_special=())) for t in TEXTS]
        assert tokens.count_texts(model, TEXTS) == expected
        assert tokens.count_embedding_input(model, [*TEXTS, [1, 2, 3]]) == sum(expected) + 3
    messages = [{"role": "system", "content": TEXTS[1], "name": "x"}, {"role": "user", "content": TEXTS[0]}]
    full = tiktoken.get_encoding("o200k_base")
    by_hand = 3 + 2 * 3 + 1 + sum(len(full.encode(t)) for t in ("system", TEXTS[1], "x", "user", TEXTS[0]))
    assert tokens.count_chat_prompt("gpt-4o-mini", messages) == by_hand
    assert tokens.load_encoding.cache_info().currsize == 0, "the worker loaded tables it had a server for"


def test_a_worker_counts_in_process_while_its_server_is_gone_and_uses_it_again_when_back(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(token_client, "RETRY_AFTER_S", 0.0)
    monkeypatch.setattr(tokenizer, "RESTART_PAUSE_S", 0.0)
    assert tokens.count_text("gpt-4o-mini", "hello world") == 2
    (first,) = _server_pids()
    os.kill(first, signal.SIGKILL)
    _wait_for(lambda: first not in _server_pids())

    assert tokens.count_text("gpt-4o-mini", "hello world") == 2  # in process: the same number
    assert tokens.load_encoding.cache_info().currsize == 1

    _wait_for(lambda: len(_server_pids()) == 1 and first not in _server_pids())
    _wait_for(lambda: tokens._server is not None and tokens._server.count("o200k_base", ["hello world"]) == [2])


def test_a_garbled_frame_costs_its_sender_the_connection_and_nobody_else(server: str) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as rogue:
        rogue.connect(server)
        rogue.sendall(HEADER.pack(60_000, 1) + b"x" * 16)
        rogue.settimeout(5)
        assert rogue.recv(16) == b""
    assert tokens.count_text("gpt-4o-mini", "hello world") == 2
    assert tokens.load_encoding.cache_info().currsize == 0


def test_the_server_goes_when_the_process_that_started_it_is_killed(tmp_path: Path) -> None:
    path = tmp_path / "tokens.sock"
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time; "
            f"subprocess.Popen([sys.executable, '-m', 'app.kit.token_server', {str(path)!r}, "
            "'--parent', str(__import__('os').getpid()), '--preload']); time.sleep(60)",
        ],
        cwd=ROOT,
    )
    try:
        _wait_for(path.exists)
        child = int(subprocess.run(["pgrep", "-P", str(parent.pid)], capture_output=True).stdout.split()[0])
    finally:
        parent.kill()
        parent.wait(10)
    _wait_for(lambda: not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2])


def test_a_worker_process_never_imports_alembic() -> None:
    """`tollgate serve` migrates in a child process: the worker keeps alembic's 8 MB out."""
    code = "import sys, app.cli.main, app.main; print('alembic' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


async def test_pipelined_counts_reach_each_waiter_in_order_even_past_a_cancelled_one(server: str) -> None:
    full = tiktoken.get_encoding("o200k_base")
    texts = [f"request {i}: " + "word " * i for i in range(60)]
    assert await tokens.acount_texts("gpt-4o-mini", ["connected"]) == [1]
    cancelled = asyncio.ensure_future(tokens.acount_texts("gpt-4o-mini", ["cancelled " * 500]))
    await asyncio.sleep(0)  # its frame is sent and it waits for the answer
    cancelled.cancel()
    answers = await asyncio.gather(*(tokens.acount_texts("gpt-4o-mini", [t, "x"]) for t in texts))
    assert answers == [[len(full.encode(t)), 1] for t in texts]
    assert await tokens.aestimate_chat_prompt("gpt-4o-mini", {"messages": [{"role": "user", "content": "hi"}]}) == (
        tokens.estimate_chat_prompt("gpt-4o-mini", {"messages": [{"role": "user", "content": "hi"}]})
    )
    assert tokens.load_encoding.cache_info().currsize == 0


async def test_an_async_count_falls_back_when_the_server_is_killed_and_reconnects_later(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(token_client, "RETRY_AFTER_S", 0.0)
    monkeypatch.setattr(tokenizer, "RESTART_PAUSE_S", 0.0)
    assert await tokens.acount_texts("gpt-4o-mini", ["hello world"]) == [2]
    (first,) = _server_pids()
    os.kill(first, signal.SIGKILL)
    _wait_for(lambda: first not in _server_pids())
    assert await tokens.acount_texts("gpt-4o-mini", ["hello world"]) == [2]
    assert tokens.load_encoding.cache_info().currsize == 1  # counted in process meanwhile
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        assert tokens._server is not None
        if await tokens._server.acount("o200k_base", ["hello world"]) == [2]:
            return
        await asyncio.sleep(0.05)
    pytest.fail("the worker never went back to the restarted server")


async def test_a_server_that_stops_answering_costs_a_timeout_then_counts_in_process(tmp_path: Path) -> None:
    path = str(tmp_path / "mute.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as mute:
        mute.bind(path)
        mute.listen()
        client = token_client.TokenServerClient(path, timeout_s=0.2)
        assert await client.acount("o200k_base", ["hello"]) is None
        assert client.count("o200k_base", ["hello"]) is None  # within the pause: not asked again
        client.close()


def test_threads_each_get_their_own_connection_and_their_own_answers(server: str) -> None:
    full = tiktoken.get_encoding("o200k_base")
    texts = [f"thread {i} " + "lorem ipsum " * (50 * i) for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda t: [tokens.count_texts("gpt-4o-mini", [t] * 3) for _ in range(30)], texts))
    for text, answer in zip(texts, answers, strict=True):
        assert answer == [[len(full.encode(text))] * 3] * 30
    assert tokens.load_encoding.cache_info().currsize == 0


async def test_a_large_prompt_is_counted_while_the_event_loop_serves_others(server: str) -> None:
    big = "The quick brown fox jumps over the lazy dog. " * 100_000  # 4.5 MB
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.001)

    running = asyncio.ensure_future(ticker())
    try:
        counted = await tokens.acount_texts("gpt-4o-mini", [big])
    finally:
        running.cancel()
    assert counted == [len(tiktoken.get_encoding("o200k_base").encode(big))]
    assert ticks > 1, "the loop was blocked while the server counted"


async def test_the_frames_of_one_loop_turn_go_out_in_one_write(server: str) -> None:
    assert await tokens.acount_texts("gpt-4o-mini", ["connected"]) == [1]
    assert tokens._server is not None
    pipeline = tokens._server._pipelines[asyncio.get_running_loop()]
    assert pipeline.transport is not None
    writes: list[bytes] = []
    write = pipeline.transport.write

    def spy(data: bytes | bytearray | memoryview) -> None:
        writes.append(bytes(data))
        write(data)

    pipeline.transport.write = spy  # type: ignore[method-assign]
    texts = ["word " * i for i in range(1, 11)]
    answers = await asyncio.gather(*(tokens.acount_texts("gpt-4o-mini", [t]) for t in texts))
    full = tiktoken.get_encoding("o200k_base")
    assert answers == [[len(full.encode(t))] for t in texts]
    assert len(writes) == 1


def test_a_buffer_yields_each_whole_frame_and_waits_for_the_rest() -> None:
    frames = pack_request("o200k_base", ["a", "bc"]) + pack_request("cl100k_base", ["\ud800", ""])
    buffer = bytearray(frames[:-1])
    assert take_frame(buffer) == ("o200k_base", ["a", "bc"])
    assert take_frame(buffer) is None  # the second is one byte short
    buffer += frames[-1:]
    assert take_frame(buffer) == ("cl100k_base", ["\ud800", ""])
    assert buffer == bytearray()
    with pytest.raises(Garbled):
        take_frame(bytearray(HEADER.pack(60_000, 1)))
