"""Logs carry the request id on every line and never a secret."""

from __future__ import annotations

import io
import json
import logging

import httpx
import pytest

from app.kit.logging import (
    BufferedStreamHandler,
    JsonFormatter,
    configure_logging,
    flush_logs,
    request_id_var,
    scrub,
)
from tests.fixtures.live_server import LiveServer
from tests.fixtures.servers import ADMIN_KEY, UPSTREAM_KEY, Tenant


async def test_a_request_logs_no_secret(tollgate: LiveServer, tenant: Tenant, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = tenant.client(tollgate.url)
    await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    async with httpx.AsyncClient(base_url=tollgate.url) as http:
        await http.get("/v1/me", headers={"authorization": f"Bearer {tenant.token}x"})
    text = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    assert "/v1/chat/completions" in text
    for secret in (tenant.token, UPSTREAM_KEY, ADMIN_KEY):
        assert secret not in text


def test_json_lines_have_the_request_id_and_scrub_keys() -> None:
    token = request_id_var.set("req_abc")
    try:
        record = logging.LogRecord("t", logging.INFO, "f", 1, "saw tg-%s", ("A" * 43,), None)
        line = json.loads(JsonFormatter().format(record))
    finally:
        request_id_var.reset(token)
    assert line["request_id"] == "req_abc"
    assert line["msg"] == "saw tg-[redacted]"
    assert scrub("Bearer sk-proj-abcdefghijkl") == "Bearer sk-[redacted]"


class _CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


async def test_info_lines_are_buffered_and_warnings_flushed_at_once() -> None:
    stream = _CountingStream()
    handler = BufferedStreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tollgate.test-buffering")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        logger.warning("first")
        assert stream.flushes == 1
        for _ in range(100):
            logger.info("a request line")
        assert stream.flushes == 1, "a request line must not cost a flush"
        assert stream.getvalue().count("a request line") == 100
        logging.getLogger().addHandler(handler)
        await flush_logs()
        assert stream.flushes == 2
    finally:
        logging.getLogger().removeHandler(handler)
        logger.removeHandler(handler)


def test_configured_logging_collects_nothing_its_formatters_do_not_print(monkeypatch: pytest.MonkeyPatch) -> None:
    """A record costs no stack walk and no thread or process lookups: no formatter prints them."""
    for name in ("_srcfile", "logThreads", "logProcesses", "logMultiprocessing"):
        monkeypatch.setattr(logging, name, getattr(logging, name))
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    configure_logging("INFO", as_json=True)
    capture = _Collect()
    root.addHandler(capture)
    logging.getLogger("tollgate.test-collect").info("hello")
    (record,) = capture.records
    assert record.funcName == "(unknown function)" and record.lineno == 0
    assert record.thread is None and record.process is None and record.processName is None


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
