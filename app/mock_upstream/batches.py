"""The fake upstream's Batch API, shaped like OpenAI's, over the mock's Files store.

A batch moves one step each time it is retrieved: ``validating`` -> ``in_progress`` ->
``completed`` (or ``cancelling`` -> ``cancelled`` after a cancel), so a poller or a client sees
it finish after a couple of looks. Its lines are answered when it ends, with the mock's chat and
embeddings usage, into an output file (and an error file for failed lines). Tests steer a batch
with its metadata: ``{"mock_outcome": "failed" | "expired"}``, or ``{"mock_polls": "5"}`` to keep
it in progress for that many more looks.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.mock_upstream.chat import completion_payload, count_tokens, plan_chat, validate_chat_body
from app.mock_upstream.files import FileStore, StoredFile, file_object
from app.mock_upstream.prelude import MockControls, json_response
from app.mock_upstream.store import bad_request, list_page, not_found

ENDPOINTS = frozenset({"/v1/chat/completions", "/v1/embeddings", "/v1/responses", "/v1/completions", "/v1/moderations"})
_WINDOW_S = 24 * 3600
_TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})


@dataclass
class MockBatch:
    obj: dict[str, Any]
    polls_left: int = 0


def _batches(request: Request) -> dict[str, MockBatch]:
    state = request.app.state
    if not hasattr(state, "batches"):
        state.batches = {}
    batches: dict[str, MockBatch] = state.batches
    return batches


def _files(request: Request) -> FileStore:
    store = request.app.state.files
    assert isinstance(store, FileStore)
    return store


async def _create(request: Request) -> Response:
    body = request.state.mock_body
    if not isinstance(body, dict):
        return bad_request("The request body must be a JSON object.")
    file_id, endpoint = body.get("input_file_id"), body.get("endpoint")
    stored = _files(request).files.get(file_id) if isinstance(file_id, str) else None
    if stored is None:
        return not_found(f"No such File object: {file_id}", "input_file_id")
    if stored.obj["purpose"] != "batch":
        return bad_request("The input file must have purpose 'batch'.", "input_file_id")
    if endpoint not in ENDPOINTS:
        return bad_request(f"Invalid endpoint: {endpoint}", "endpoint")
    if body.get("completion_window") != "24h":
        return bad_request("completion_window must be '24h'.", "completion_window")
    metadata = body.get("metadata") if isinstance(body.get("metadata"), dict) else None
    created = int(time.time())
    total = sum(1 for line in stored.path.read_bytes().splitlines() if line.strip())
    obj: dict[str, Any] = {
        "id": f"batch_{secrets.token_hex(12)}",
        "object": "batch",
        "endpoint": endpoint,
        "errors": None,
        "input_file_id": file_id,
        "completion_window": "24h",
        "status": "validating",
        "output_file_id": None,
        "error_file_id": None,
        "created_at": created,
        "in_progress_at": None,
        "expires_at": created + _WINDOW_S,
        "finalizing_at": None,
        "completed_at": None,
        "failed_at": None,
        "expired_at": None,
        "cancelling_at": None,
        "cancelled_at": None,
        "request_counts": {"total": total, "completed": 0, "failed": 0},
        "metadata": metadata,
    }
    polls = str((metadata or {}).get("mock_polls", "0"))
    _batches(request)[obj["id"]] = MockBatch(obj, int(polls) if polls.isdigit() else 0)
    return json_response(obj)


async def _retrieve(request: Request) -> Response:
    batch = _batches(request).get(request.path_params["batch_id"])
    if batch is None:
        return not_found(f"No batch found with id '{request.path_params['batch_id']}'.")
    _advance(_files(request), batch)
    return json_response(batch.obj)


async def _cancel(request: Request) -> Response:
    batch = _batches(request).get(request.path_params["batch_id"])
    if batch is None:
        return not_found(f"No batch found with id '{request.path_params['batch_id']}'.")
    if batch.obj["status"] in _TERMINAL:
        return bad_request(f"Cannot cancel a batch with status '{batch.obj['status']}'.")
    batch.obj.update(status="cancelling", cancelling_at=int(time.time()))
    return json_response(batch.obj)


async def _list(request: Request) -> Response:
    return list_page(request, [b.obj for b in _batches(request).values()])


def _advance(files: FileStore, batch: MockBatch) -> None:
    obj, now = batch.obj, int(time.time())
    outcome = (obj.get("metadata") or {}).get("mock_outcome")
    if obj["status"] == "validating":
        if outcome == "failed":
            error = {"code": "invalid_request", "message": "The mock was told to fail this batch.", "line": 1}
            obj.update(status="failed", failed_at=now, errors={"object": "list", "data": [error]})
            return
        obj.update(status="in_progress", in_progress_at=now)
    elif obj["status"] == "in_progress" and batch.polls_left > 0:
        batch.polls_left -= 1
    elif obj["status"] == "in_progress":
        expired = outcome == "expired"
        _finish(files, batch, partial=expired)
        obj.update(status="expired", expired_at=now) if expired else obj.update(status="completed", completed_at=now)
    elif obj["status"] == "cancelling":
        _finish(files, batch, partial=True)
        obj.update(status="cancelled", cancelled_at=now)


def _finish(files: FileStore, batch: MockBatch, *, partial: bool) -> None:
    """Answers the batch's lines (only the first half when it was cut short) into its files."""
    obj = batch.obj
    lines = [json.loads(line) for line in files.files[obj["input_file_id"]].path.read_bytes().splitlines() if line]
    done = len(lines) // 2 if partial else len(lines)
    outputs: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for index, line in enumerate(lines):
        if index < done:
            result = _answer(obj["endpoint"], line)
            (outputs if result.get("error") is None else errors).append(result)
        else:
            errors.append(_line(line, None, {"code": "batch_expired", "message": "This request was not run."}))
    obj["finalizing_at"] = int(time.time())
    obj["output_file_id"] = _store_file(files, obj["id"], "output", outputs)
    obj["error_file_id"] = _store_file(files, obj["id"], "error", errors)
    obj["request_counts"] = {"total": len(lines), "completed": len(outputs), "failed": len(errors)}


def _answer(endpoint: str, line: dict[str, Any]) -> dict[str, Any]:
    body = line.get("body")
    if endpoint == "/v1/chat/completions" and isinstance(body, dict) and validate_chat_body(body) is None:
        call = secrets.token_hex(6)
        plan = plan_chat(body, MockControls.from_body(body), completion_id=f"chatcmpl-batch-{call}", call_id=call)
        return _line(line, completion_payload(plan), None)
    if endpoint == "/v1/embeddings" and isinstance(body, dict) and isinstance(body.get("input"), str | list):
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        tokens = sum(count_tokens(t, "cl100k_base") for t in texts if isinstance(t, str))
        data = [{"object": "embedding", "index": i, "embedding": [0.0] * 8} for i in range(len(texts))]
        payload = {"object": "list", "data": data, "model": body.get("model"), "usage": {"prompt_tokens": tokens}}
        return _line(line, payload, None)
    return _line(line, None, {"code": "invalid_request", "message": "The mock cannot answer this request."})


def _line(line: dict[str, Any], body: dict[str, Any] | None, error: dict[str, Any] | None) -> dict[str, Any]:
    response = None
    if body is not None:
        response = {"status_code": 200, "request_id": secrets.token_hex(8), "body": body}
    return {
        "id": f"batch_req_{secrets.token_hex(8)}",
        "custom_id": line.get("custom_id"),
        "response": response,
        "error": error,
    }


def _store_file(files: FileStore, batch_id: str, kind: str, lines: list[dict[str, Any]]) -> str | None:
    if not lines:
        return None
    content = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    path = files.new_path()
    path.write_bytes(content)
    file_id = f"file-{secrets.token_hex(11)}"
    files.files[file_id] = StoredFile(
        file_object(file_id, len(content), int(time.time()), f"{batch_id}_{kind}.jsonl", f"batch_{kind}"), path
    )
    return file_id


ROUTES: list[Route] = [
    Route("/v1/batches", _create, methods=["POST"]),
    Route("/v1/batches", _list, methods=["GET"]),
    Route("/v1/batches/{batch_id}", _retrieve, methods=["GET"]),
    Route("/v1/batches/{batch_id}/cancel", _cancel, methods=["POST"]),
]
