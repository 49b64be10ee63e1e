"""Upstream faults, one table: each gets the client an OpenAI-shaped answer within the configured
timeouts, settles or releases the money, and leaves no task, upstream connection or stream behind."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.faults.conftest import MAX_RESPONSE_BYTES, Rig, at_rest
from tests.fixtures.servers import PRICED_MODEL, UPSTREAM_KEY, Admin, Tenant, lease_count, usage_rows

# The client waits this long at most: well past the read timeout, far short of a hang.
CLIENT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Fault:
    controls: dict[str, Any]
    stream: bool
    status: int  # the HTTP status the client sees
    error_code: str | None  # the OpenAI-shaped error, in the body or as the stream's last event
    row_status: str
    charged: str  # "nothing", "all" (the worst case), or "some" (what upstream or tiktoken counted)


FAULTS = {
    "slow first byte": Fault({"delay_ms": 3000}, False, 504, "upstream_timeout", "upstream_error", "nothing"),
    "slow first byte, stream": Fault({"delay_ms": 3000}, True, 504, "upstream_timeout", "upstream_error", "nothing"),
    "stall mid-stream": Fault(
        {"words": 6, "stall_after": 2}, True, 200, "upstream_stream_error", "stream_error", "some"
    ),
    "reset mid-body": Fault({"cut_body": True}, False, 502, "upstream_error", "upstream_error", "all"),
    "reset mid-stream": Fault(
        {"words": 6, "drop_after": 2}, True, 200, "upstream_stream_error", "stream_error", "some"
    ),
    "malformed JSON": Fault({"malformed": True}, False, 502, "upstream_error", "upstream_error", "all"),
    "malformed SSE": Fault({"words": 6, "malformed": True}, True, 200, "upstream_stream_error", "stream_error", "some"),
    "200 without usage": Fault({"no_usage": True}, False, 200, None, "ok", "some"),
    "200 without usage, stream": Fault({"no_usage": True}, True, 200, None, "ok", "some"),
    "huge answer": Fault(
        {"pad_bytes": 2 * MAX_RESPONSE_BYTES}, False, 502, "upstream_too_large", "upstream_error", "all"
    ),
    "429 with Retry-After": Fault(
        {"status": 429, "retry_after": 7}, False, 429, "upstream_rate_limited", "upstream_error", "nothing"
    ),
    "500": Fault({"status": 500}, False, 502, "upstream_error", "upstream_error", "nothing"),
    "500, stream": Fault({"status": 500}, True, 502, "upstream_error", "upstream_error", "nothing"),
}


async def _call(http: httpx.AsyncClient, fault: Fault) -> tuple[int, dict[str, str], list[Any]]:
    """The status, headers and JSON payloads (the body, or each SSE event's data) the client got."""
    body = {"model": PRICED_MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 50}
    body |= {"stream": fault.stream, "mock": fault.controls}
    async with http.stream("POST", "/v1/chat/completions", json=body) as response:
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            return response.status_code, dict(response.headers), [json.loads(await response.aread())]
        events = [line[6:] async for line in response.aiter_lines() if line.startswith("data: ")]
        return response.status_code, dict(response.headers), [json.loads(e) for e in events if e != "[DONE]"]


@pytest.mark.parametrize("name", FAULTS)
async def test_upstream_fault(
    name: str, rested: Rig, tenant_with_budget: tuple[Tenant, str], admin: Admin, engine: AsyncEngine
) -> None:
    fault = FAULTS[name]
    tenant, budget_id = tenant_with_budget
    async with tenant.http(rested.server.url) as http:
        http.timeout = httpx.Timeout(CLIENT_TIMEOUT_S)
        status, headers, payloads = await _call(http, fault)

    assert status == fault.status
    if fault.error_code is None:
        assert all("error" not in p for p in payloads)
    else:
        error = payloads[-1]["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["code"] == fault.error_code
        assert all(marker not in json.dumps(payloads) for marker in ("org-mockorg", "sk-mock", UPSTREAM_KEY))
    if fault.stream and fault.status == 200:  # nothing unreadable reaches the client
        assert all(isinstance(p, dict) for p in payloads)
    if fault.status == 429:
        assert headers["retry-after"] == "7"

    [row] = await usage_rows(engine, tenant.key_id)
    state = await admin.budget_state(budget_id)
    assert row.status == fault.row_status
    assert state["reserved_micros"] == 0 and await lease_count(engine, tenant.key_id) == 0
    assert state["spent_micros"] == row.cost_micros
    if fault.charged == "nothing":
        assert row.cost_micros == 0
    elif fault.charged == "all":
        # Upstream took the call but its answer was lost: the most it could cost is charged.
        assert row.cost_micros > 0 and row.usage_source == "estimated" and row.completion_tokens == 0
    else:
        assert row.cost_micros > 0 and row.completion_tokens > 0

    tasks, connections, streams = await at_rest(rested)
    assert (connections, streams) == (0, 0), "no upstream connection or stream is left open"
    assert tasks <= rested.tasks_at_rest, "no task is left behind"
