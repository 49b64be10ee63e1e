"""The fake upstream's Files and Uploads APIs, shaped like OpenAI's.

Content lives in temporary files, not in memory: tests send files of hundreds of megabytes
through Tollgate and measure the memory of the process that runs both servers.
"""

from __future__ import annotations

import hashlib
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from app.kit.multipart import MultipartError, MultipartReader, PartData, PartEnd, PartStart, form_boundary
from app.mock_upstream.prelude import error_body, json_response

PURPOSES = frozenset({"assistants", "batch", "fine-tune", "vision", "user_data", "evals"})
_FILE_FIELDS = frozenset({"purpose", "expires_after[anchor]", "expires_after[seconds]"})
_BATCH_TTL_S = 30 * 24 * 3600
_UPLOAD_TTL_S = 3600


@dataclass
class StoredFile:
    obj: dict[str, Any]
    path: Path


@dataclass
class StoredUpload:
    obj: dict[str, Any]
    parts: dict[str, Path] = field(default_factory=dict)


class FileStore:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="tollgate-mock-files-"))
        self.files: dict[str, StoredFile] = {}
        self.uploads: dict[str, StoredUpload] = {}

    def new_path(self) -> Path:
        return self.dir / secrets.token_hex(8)

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class _Form:
    fields: dict[str, str]
    path: Path | None = None
    filename: str | None = None
    size: int = 0


def routes() -> list[Route]:
    return [
        Route("/v1/files", _create_file, methods=["POST"]),
        Route("/v1/files", _list_files, methods=["GET"]),
        Route("/v1/files/{file_id}", _retrieve_file, methods=["GET"]),
        Route("/v1/files/{file_id}", _delete_file, methods=["DELETE"]),
        Route("/v1/files/{file_id}/content", _file_content, methods=["GET"]),
        Route("/v1/uploads", _create_upload, methods=["POST"]),
        Route("/v1/uploads/{upload_id}/parts", _add_part, methods=["POST"]),
        Route("/v1/uploads/{upload_id}/complete", _complete_upload, methods=["POST"]),
        Route("/v1/uploads/{upload_id}/cancel", _cancel_upload, methods=["POST"]),
    ]


def _store(request: Request) -> FileStore:
    store = request.app.state.files
    assert isinstance(store, FileStore)
    return store


def _bad(message: str, param: str | None = None) -> Response:
    return json_response(error_body(message, "invalid_request_error", param=param), 400)


def _missing_file(file_id: str) -> Response:
    return json_response(error_body(f"No such File object: {file_id}", "invalid_request_error", param="id"), 404)


def _missing_upload(upload_id: str) -> Response:
    return json_response(error_body(f"No such Upload: {upload_id}", "invalid_request_error", param="id"), 404)


async def _read_form(request: Request, file_field: str, fields: frozenset[str]) -> _Form:
    """The form's text fields, and its file written to a temporary file as it arrives."""
    reader = MultipartReader(form_boundary(request.headers.get("content-type")))
    form, current, value = _Form(fields={}), None, bytearray()
    path = _store(request).new_path()
    try:
        with path.open("wb") as out:
            async for chunk in request.stream():
                for event in reader.feed(chunk):
                    if isinstance(event, PartStart):
                        current = event.headers.name
                        if current != file_field and current not in fields:
                            raise MultipartError(f"Unrecognized request argument supplied: {current}")
                        if current == file_field:
                            form.path, form.filename = path, event.headers.filename
                    elif isinstance(event, PartData) and current == file_field:
                        out.write(event.data)
                        form.size += len(event.data)
                    elif isinstance(event, PartData):
                        value += event.data
                    elif isinstance(event, PartEnd) and current != file_field and current is not None:
                        form.fields[current], current = value.decode("utf-8", "replace"), None
                        value.clear()
            reader.close()
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    if form.path is None:
        path.unlink(missing_ok=True)
    return form


async def _create_file(request: Request) -> Response:
    try:
        form = await _read_form(request, "file", _FILE_FIELDS)
    except MultipartError as exc:
        return _bad(str(exc))
    problem = _file_form_problem(form)
    if problem is not None:
        if form.path is not None:
            form.path.unlink(missing_ok=True)
        return _bad(*problem)
    assert form.path is not None
    purpose = form.fields["purpose"]
    created = int(time.time())
    obj = file_object(f"file-{secrets.token_hex(11)}", form.size, created, form.filename or "file", purpose)
    obj["expires_at"] = _expiry(form.fields, created, purpose)
    _store(request).files[obj["id"]] = StoredFile(obj, form.path)
    return json_response(obj)


def _file_form_problem(form: _Form) -> tuple[str, str] | None:
    if form.path is None:
        return "Missing required parameter: 'file'.", "file"
    purpose = form.fields.get("purpose")
    if purpose is None:
        return "Missing required parameter: 'purpose'.", "purpose"
    if purpose not in PURPOSES:
        return f"'{purpose}' is not one of {sorted(PURPOSES)} - 'purpose'", "purpose"
    anchor, seconds = form.fields.get("expires_after[anchor]"), form.fields.get("expires_after[seconds]")
    bad_seconds = not (seconds or "").isdigit() or not 3600 <= int(seconds or 0) <= 2592000
    if (anchor, seconds) != (None, None) and (anchor != "created_at" or bad_seconds):
        return "expires_after needs anchor 'created_at' and seconds between 3600 and 2592000.", "expires_after"
    return None


def _expiry(fields: dict[str, str], created: int, purpose: str) -> int | None:
    seconds = fields.get("expires_after[seconds]")
    if seconds is not None:
        return created + int(seconds)
    return created + _BATCH_TTL_S if purpose == "batch" else None


def file_object(file_id: str, size: int, created: int, filename: str, purpose: str) -> dict[str, Any]:
    return {
        "id": file_id,
        "object": "file",
        "bytes": size,
        "created_at": created,
        "expires_at": None,
        "filename": filename,
        "purpose": purpose,
        "status": "processed",
        "status_details": None,
    }


async def _list_files(request: Request) -> Response:
    params = request.query_params
    items = [f.obj for f in _store(request).files.values()]
    if "purpose" in params:
        items = [o for o in items if o["purpose"] == params["purpose"]]
    if params.get("order", "desc") == "desc":
        items.reverse()
    ids = [o["id"] for o in items]
    if params.get("after") in ids:
        items = items[ids.index(params["after"]) + 1 :]
    limit = int(params.get("limit", "10000"))
    page = items[:limit]
    first, last = (page[0]["id"], page[-1]["id"]) if page else (None, None)
    body = {"object": "list", "data": page, "first_id": first, "last_id": last, "has_more": len(items) > limit}
    return json_response(body)


async def _retrieve_file(request: Request) -> Response:
    file_id = request.path_params["file_id"]
    stored = _store(request).files.get(file_id)
    return json_response(stored.obj) if stored else _missing_file(file_id)


async def _delete_file(request: Request) -> Response:
    file_id = request.path_params["file_id"]
    stored = _store(request).files.pop(file_id, None)
    if stored is None:
        return _missing_file(file_id)
    stored.path.unlink(missing_ok=True)
    return json_response({"id": file_id, "object": "file", "deleted": True})


async def _file_content(request: Request) -> Response:
    file_id = request.path_params["file_id"]
    stored = _store(request).files.get(file_id)
    if stored is None:
        return _missing_file(file_id)
    return FileResponse(stored.path, media_type="application/octet-stream")


async def _create_upload(request: Request) -> Response:
    body = request.state.mock_body
    if not isinstance(body, dict):
        return _bad("The request body must be a JSON object.")
    for name, kind in (("filename", str), ("purpose", str), ("bytes", int), ("mime_type", str)):
        if not isinstance(body.get(name), kind) or isinstance(body.get(name), bool):
            return _bad(f"Missing or invalid required parameter: '{name}'.", name)
    if body["purpose"] not in PURPOSES:
        return _bad(f"'{body['purpose']}' is not one of {sorted(PURPOSES)} - 'purpose'", "purpose")
    created = int(time.time())
    obj = {
        "id": f"upload_{secrets.token_hex(12)}",
        "object": "upload",
        "bytes": body["bytes"],
        "created_at": created,
        "filename": body["filename"],
        "purpose": body["purpose"],
        "status": "pending",
        "expires_at": created + _UPLOAD_TTL_S,
        "file": None,
    }
    _store(request).uploads[obj["id"]] = StoredUpload(obj)
    return json_response(obj)


def _pending(request: Request) -> StoredUpload | Response:
    upload_id = request.path_params["upload_id"]
    upload = _store(request).uploads.get(upload_id)
    if upload is None:
        return _missing_upload(upload_id)
    if upload.obj["status"] != "pending":
        return _bad(f"Upload {upload_id} is already {upload.obj['status']}.")
    return upload


async def _add_part(request: Request) -> Response:
    upload = _pending(request)
    if isinstance(upload, Response):
        return upload
    try:
        form = await _read_form(request, "data", frozenset())
    except MultipartError as exc:
        return _bad(str(exc))
    if form.path is None:
        return _bad("Missing required parameter: 'data'.", "data")
    part_id = f"part_{secrets.token_hex(12)}"
    upload.parts[part_id] = form.path
    payload = {"id": part_id, "object": "upload.part", "created_at": int(time.time()), "upload_id": upload.obj["id"]}
    return json_response(payload)


async def _complete_upload(request: Request) -> Response:
    upload = _pending(request)
    if isinstance(upload, Response):
        return upload
    body = request.state.mock_body
    part_ids = body.get("part_ids") if isinstance(body, dict) else None
    if not isinstance(part_ids, list) or not all(isinstance(p, str) and p in upload.parts for p in part_ids):
        return _bad("part_ids must list Parts of this Upload.", "part_ids")
    size = sum(upload.parts[p].stat().st_size for p in part_ids)
    if size != upload.obj["bytes"]:
        return _bad(f"The Upload expected {upload.obj['bytes']} bytes but its parts hold {size}.", "part_ids")
    store, path, digest = _store(request), _store(request).new_path(), hashlib.md5()  # noqa: S324 - OpenAI's checksum
    with path.open("wb") as out:
        for part_id in part_ids:
            with upload.parts[part_id].open("rb") as part:
                while chunk := part.read(1024 * 1024):
                    out.write(chunk)
                    digest.update(chunk)
    md5 = body.get("md5") if isinstance(body, dict) else None
    if isinstance(md5, str) and md5 and md5 != digest.hexdigest():
        path.unlink()
        return _bad("The md5 checksum does not match the uploaded bytes.", "md5")
    obj = upload.obj
    file = file_object(f"file-{secrets.token_hex(11)}", size, int(time.time()), obj["filename"], obj["purpose"])
    store.files[file["id"]] = StoredFile(file, path)
    _drop_parts(upload)
    obj.update(status="completed", file=file)
    return json_response(obj)


async def _cancel_upload(request: Request) -> Response:
    upload = _pending(request)
    if isinstance(upload, Response):
        return upload
    _drop_parts(upload)
    upload.obj["status"] = "cancelled"
    return json_response(upload.obj)


def _drop_parts(upload: StoredUpload) -> None:
    for path in upload.parts.values():
        path.unlink(missing_ok=True)
    upload.parts.clear()
