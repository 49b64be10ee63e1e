"""The fake upstream's fine-tuning API, shaped like OpenAI's.

A job moves one step each time it is read (retrieve, or list): ``validating_files`` ->
``queued`` -> ``running`` -> ``succeeded``, with ``trained_tokens`` (the training file's tokens,
counted the cookbook way, times the epochs), a ``fine_tuned_model`` and a result file. The
``mock`` object of the create body steers it: ``steps`` (reads before it finishes, default 3),
``fail`` (it ends ``failed``), ``trained_tokens`` (reported instead of the count). Tests can also
fail a running job with ``app.state.fine_tuning.fail(job_id)``.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.mock_upstream.chat import count_chat_prompt_tokens
from app.mock_upstream.files import FileStore, StoredFile, file_object
from app.mock_upstream.prelude import json_response
from app.mock_upstream.store import bad_request, not_found

ORGANIZATION = "tollgate-mock"
_ORDER = ("validating_files", "queued", "running", "succeeded")
_TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


@dataclass
class MockJob:
    obj: dict[str, Any]
    tokens: int  # what one epoch trains on
    steps_left: int
    fail: bool = False
    reported_tokens: int | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)


class FineTuningStore:
    def __init__(self) -> None:
        self.jobs: dict[str, MockJob] = {}

    def fail(self, job_id: str) -> None:
        """The job fails at its next read, having trained half its tokens."""
        self.jobs[job_id].fail = True
        self.jobs[job_id].steps_left = 0


def _routes() -> list[Route]:
    return [
        Route("/v1/fine_tuning/jobs", _create, methods=["POST"]),
        Route("/v1/fine_tuning/jobs", _list, methods=["GET"]),
        Route("/v1/fine_tuning/jobs/{job_id}", _retrieve, methods=["GET"]),
        Route("/v1/fine_tuning/jobs/{job_id}/cancel", _cancel, methods=["POST"]),
        Route("/v1/fine_tuning/jobs/{job_id}/pause", _pause, methods=["POST"]),
        Route("/v1/fine_tuning/jobs/{job_id}/resume", _resume, methods=["POST"]),
        Route("/v1/fine_tuning/jobs/{job_id}/events", _events, methods=["GET"]),
        Route("/v1/fine_tuning/jobs/{job_id}/checkpoints", _checkpoints, methods=["GET"]),
    ]


def store_of(request: Request) -> FineTuningStore:
    state = request.app.state
    if not hasattr(state, "fine_tuning"):
        state.fine_tuning = FineTuningStore()
    store = state.fine_tuning
    assert isinstance(store, FineTuningStore)
    return store


def _files(request: Request) -> FileStore:
    files = request.app.state.files
    assert isinstance(files, FileStore)
    return files


def _epochs(body: dict[str, Any], examples: int) -> int:
    method = body.get("method") or {}
    nested = ((method.get("supervised") or {}).get("hyperparameters") or {}) if isinstance(method, dict) else {}
    for source in (nested, body.get("hyperparameters") or {}):
        if isinstance(source.get("n_epochs"), int):
            return int(source["n_epochs"])
    if examples * 3 < 100:
        return min(25, 100 // max(examples, 1))
    if examples * 3 > 25_000:
        return max(1, 25_000 // examples)
    return 3


def _count(stored: StoredFile) -> tuple[int, int]:
    """(examples, tokens) of a training file, as the mock's own count of chat examples."""
    examples = tokens = 0
    with stored.path.open("rb") as lines:
        for line in lines:
            if line.strip():
                examples += 1
                tokens += count_chat_prompt_tokens(json.loads(line)["messages"])
    return examples, tokens


async def _create(request: Request) -> Response:
    body = request.state.mock_body
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        return bad_request("Missing required parameter: 'model'.", "model")
    training = _files(request).files.get(str(body.get("training_file")))
    if training is None or training.obj["purpose"] != "fine-tune":
        return bad_request(f"invalid training_file: {body.get('training_file')}", "training_file")
    examples, tokens = _count(training)
    epochs = _epochs(body, examples)
    mock: dict[str, Any] = body["mock"] if isinstance(body.get("mock"), dict) else {}
    job_id = f"ftjob-{secrets.token_hex(12)}"
    obj = _job_object(body, job_id, training.obj["id"], epochs)
    job = MockJob(
        obj,
        tokens * epochs,
        int(mock.get("steps", 3)),
        fail=mock.get("fail") is True,
        reported_tokens=mock.get("trained_tokens") if isinstance(mock.get("trained_tokens"), int) else None,
    )
    _event(job, f"Created fine-tuning job: {job_id}")
    store_of(request).jobs[job_id] = job
    return json_response(obj)


def _job_object(body: dict[str, Any], job_id: str, training_id: str, epochs: int) -> dict[str, Any]:
    return {
        "object": "fine_tuning.job",
        "id": job_id,
        "model": body["model"],
        "created_at": int(time.time()),
        "finished_at": None,
        "fine_tuned_model": None,
        "organization_id": "org-mock",
        "result_files": [],
        "status": "validating_files",
        "validation_file": body.get("validation_file"),
        "training_file": training_id,
        "hyperparameters": {"n_epochs": epochs, "batch_size": 1, "learning_rate_multiplier": 1.0},
        "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": epochs}}},
        "trained_tokens": None,
        "error": None,
        "user_provided_suffix": body.get("suffix"),
        "seed": body.get("seed", 42),
        "estimated_finish": None,
        "integrations": [],
        "metadata": body.get("metadata"),
    }


def _event(job: MockJob, message: str) -> None:
    event = {
        "object": "fine_tuning.job.event",
        "id": f"ftevent-{secrets.token_hex(12)}",
        "created_at": int(time.time()),
        "level": "info",
        "message": message,
        "data": {},
        "type": "message",
    }
    job.events.append(event)


def _advance(request: Request, job: MockJob) -> None:
    obj = job.obj
    if obj["status"] in _TERMINAL or obj["status"] == "paused":
        return
    if job.fail and job.steps_left <= 0:
        _finish(request, job, "failed")
        return
    if job.steps_left <= 1:
        _finish(request, job, "failed" if job.fail else "succeeded")
        return
    job.steps_left -= 1
    position = _ORDER.index(obj["status"])
    obj["status"] = _ORDER[min(position + 1, 2)]
    _event(job, f"Job status: {obj['status']}")


def _finish(request: Request, job: MockJob, status: str) -> None:
    obj = job.obj
    obj["status"], obj["finished_at"] = status, int(time.time())
    trained = job.reported_tokens if job.reported_tokens is not None else job.tokens
    if status == "failed":
        obj["trained_tokens"] = job.reported_tokens if job.reported_tokens is not None else job.tokens // 2
        obj["error"] = {"code": "invalid_training_file", "message": "The job failed.", "param": None}
    else:
        obj["trained_tokens"] = trained
        suffix = obj["user_provided_suffix"] or ""
        obj["fine_tuned_model"] = f"ft:{obj['model']}:{ORGANIZATION}:{suffix}:{obj['id'][-8:]}"
        obj["result_files"] = [_result_file(request)]
        _checkpoint(job)
    _event(job, f"Job {status}")


def _result_file(request: Request) -> str:
    files = _files(request)
    path = files.new_path()
    path.write_bytes(b"step,train_loss\n1,0.5\n")
    obj = file_object(
        f"file-{secrets.token_hex(11)}", path.stat().st_size, int(time.time()), "step_metrics.csv", "fine-tune-results"
    )
    files.files[obj["id"]] = StoredFile(obj, path)
    return str(obj["id"])


def _checkpoint(job: MockJob) -> None:
    obj = job.obj
    job.checkpoints.append(
        {
            "object": "fine_tuning.job.checkpoint",
            "id": f"ftckpt_{secrets.token_hex(12)}",
            "created_at": int(time.time()),
            "fine_tuned_model_checkpoint": f"{obj['fine_tuned_model']}:ckpt-step-10",
            "fine_tuning_job_id": obj["id"],
            "metrics": {"step": 10, "train_loss": 0.5},
            "step_number": 10,
        }
    )


def _job(request: Request) -> MockJob | Response:
    job_id = request.path_params["job_id"]
    job = store_of(request).jobs.get(job_id)
    if job is None:
        return not_found(f"Could not find fine-tune job: {job_id}", "fine_tuning_job_id")
    return job


async def _retrieve(request: Request) -> Response:
    job = _job(request)
    if isinstance(job, Response):
        return job
    _advance(request, job)
    return json_response(job.obj)


async def _list(request: Request) -> Response:
    """Every job of the organization: what Tollgate must never show a tenant."""
    data = [j.obj for j in store_of(request).jobs.values()][::-1]
    return json_response({"object": "list", "data": data, "has_more": False})


async def _cancel(request: Request) -> Response:
    job = _job(request)
    if isinstance(job, Response):
        return job
    if job.obj["status"] in _TERMINAL:
        return bad_request(f"Job has already completed: {job.obj['id']}")
    job.obj["status"], job.obj["finished_at"] = "cancelled", int(time.time())
    _event(job, "Job cancelled")
    return json_response(job.obj)


async def _pause(request: Request) -> Response:
    job = _job(request)
    if isinstance(job, Response):
        return job
    if job.obj["status"] != "running":
        return bad_request(f"Only a running job can be paused: {job.obj['id']}")
    job.obj["status"] = "paused"
    _event(job, "Job paused")
    return json_response(job.obj)


async def _resume(request: Request) -> Response:
    job = _job(request)
    if isinstance(job, Response):
        return job
    if job.obj["status"] != "paused":
        return bad_request(f"Only a paused job can be resumed: {job.obj['id']}")
    job.obj["status"] = "running"
    _event(job, "Job resumed")
    return json_response(job.obj)


def _page(request: Request, items: list[dict[str, Any]]) -> Response:
    """Newest first, paged by ``after`` and ``limit`` (default 20)."""
    ordered = items[::-1]
    after = request.query_params.get("after")
    ids = [item["id"] for item in ordered]
    if after is not None and after in ids:
        ordered = ordered[ids.index(after) + 1 :]
    limit = int(request.query_params.get("limit", "20"))
    return json_response({"object": "list", "data": ordered[:limit], "has_more": len(ordered) > limit})


async def _events(request: Request) -> Response:
    job = _job(request)
    return job if isinstance(job, Response) else _page(request, job.events)


async def _checkpoints(request: Request) -> Response:
    job = _job(request)
    return job if isinstance(job, Response) else _page(request, job.checkpoints)


ROUTES: list[Route] = _routes()
