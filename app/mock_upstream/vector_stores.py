"""The fake upstream's Vector Stores API (stores, their files, file batches, search), shaped like
OpenAI's, over the mock's Files store. Files are "processed" at once; a store's ``usage_bytes``
is the size of its files; search finds the files whose text contains a word of the query."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.mock_upstream.files import FileStore
from app.mock_upstream.prelude import json_response
from app.mock_upstream.store import bad_request, list_page, not_found


@dataclass
class MockVectorStore:
    obj: dict[str, Any]
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    batches: dict[str, dict[str, Any]] = field(default_factory=dict)


def _stores(request: Request) -> dict[str, MockVectorStore]:
    state = request.app.state
    if not hasattr(state, "vector_stores"):
        state.vector_stores = {}
    stores: dict[str, MockVectorStore] = state.vector_stores
    return stores


def _files(request: Request) -> FileStore:
    store = request.app.state.files
    assert isinstance(store, FileStore)
    return store


def _body(request: Request) -> dict[str, Any]:
    body = request.state.mock_body
    return body if isinstance(body, dict) else {}


def _store(request: Request) -> MockVectorStore | Response:
    store_id = request.path_params["vector_store_id"]
    store = _stores(request).get(store_id)
    return store if store is not None else not_found(f"No vector store found with id '{store_id}'.")


def _refresh(files: FileStore, store: MockVectorStore) -> None:
    counts = {"in_progress": 0, "completed": len(store.files), "failed": 0, "cancelled": 0}
    usage = sum(files.files[f].obj["bytes"] for f in store.files if f in files.files)
    store.obj.update(usage_bytes=usage, file_counts={**counts, "total": len(store.files)})


def _attach(request: Request, store: MockVectorStore, file_id: Any, attributes: Any) -> dict[str, Any] | None:
    files = _files(request)
    if not isinstance(file_id, str) or file_id not in files.files:
        return None
    obj = {
        "id": file_id,
        "object": "vector_store.file",
        "created_at": int(time.time()),
        "usage_bytes": files.files[file_id].obj["bytes"],
        "vector_store_id": store.obj["id"],
        "status": "completed",
        "last_error": None,
        "attributes": attributes if isinstance(attributes, dict) else {},
        "chunking_strategy": {"type": "static", "static": {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 400}},
    }
    store.files[file_id] = obj
    _refresh(files, store)
    return obj


async def _create(request: Request) -> Response:
    body = _body(request)
    created = int(time.time())
    obj: dict[str, Any] = {
        "id": f"vs_{secrets.token_hex(12)}",
        "object": "vector_store",
        "created_at": created,
        "name": body.get("name"),
        "usage_bytes": 0,
        "file_counts": {"in_progress": 0, "completed": 0, "failed": 0, "cancelled": 0, "total": 0},
        "status": "completed",
        "expires_after": body.get("expires_after"),
        "expires_at": None,
        "last_active_at": created,
        "metadata": body.get("metadata") or {},
    }
    store = MockVectorStore(obj)
    for file_id in body.get("file_ids") or []:
        if _attach(request, store, file_id, None) is None:
            return bad_request(f"File {file_id} not found.", "file_ids")
    _stores(request)[obj["id"]] = store
    return json_response(obj)


async def _list(request: Request) -> Response:
    return list_page(request, [s.obj for s in _stores(request).values()])


async def _retrieve(request: Request) -> Response:
    store = _store(request)
    return store if isinstance(store, Response) else json_response(store.obj)


async def _update(request: Request) -> Response:
    store = _store(request)
    if isinstance(store, Response):
        return store
    body = _body(request)
    for key in ("name", "metadata", "expires_after"):
        if key in body:
            store.obj[key] = body[key]
    return json_response(store.obj)


async def _delete(request: Request) -> Response:
    store = _store(request)
    if isinstance(store, Response):
        return store
    del _stores(request)[store.obj["id"]]
    return json_response({"id": store.obj["id"], "object": "vector_store.deleted", "deleted": True})


async def _search(request: Request) -> Response:
    store = _store(request)
    if isinstance(store, Response):
        return store
    query = _body(request).get("query")
    if not isinstance(query, str | list) or not query:
        return bad_request("'query' must be a non-empty string.", "query")
    words = {w.lower() for w in (query if isinstance(query, str) else " ".join(map(str, query))).split()}
    data = []
    for file_id, attached in store.files.items():
        stored = _files(request).files.get(file_id)
        text = stored.path.read_text("utf-8", "replace") if stored else ""
        hits = sum(1 for w in words if w in text.lower())
        if hits:
            filename = stored.obj["filename"] if stored else ""
            content = [{"type": "text", "text": text}]
            result = {"file_id": file_id, "filename": filename, "score": hits / len(words), "content": content}
            data.append({**result, "attributes": attached["attributes"]})
    data.sort(key=lambda r: -float(r["score"]))
    page = {"object": "vector_store.search_results.page", "search_query": [query], "data": data, "has_more": False}
    return json_response({**page, "next_page": None})


async def _create_file(request: Request) -> Response:
    store = _store(request)
    if isinstance(store, Response):
        return store
    body = _body(request)
    obj = _attach(request, store, body.get("file_id"), body.get("attributes"))
    return json_response(obj) if obj else bad_request(f"File {body.get('file_id')} not found.", "file_id")


def _store_file(request: Request) -> tuple[MockVectorStore, dict[str, Any]] | Response:
    store = _store(request)
    if isinstance(store, Response):
        return store
    file_id = request.path_params["file_id"]
    attached = store.files.get(file_id)
    if attached is None:
        return not_found(f"No file found with id '{file_id}' in vector store '{store.obj['id']}'.")
    return store, attached


async def _list_files(request: Request) -> Response:
    store = _store(request)
    if isinstance(store, Response):
        return store
    return list_page(request, list(store.files.values()))


async def _retrieve_file(request: Request) -> Response:
    found = _store_file(request)
    return found if isinstance(found, Response) else json_response(found[1])


async def _update_file(request: Request) -> Response:
    found = _store_file(request)
    if isinstance(found, Response):
        return found
    attributes = _body(request).get("attributes")
    if not isinstance(attributes, dict):
        return bad_request("'attributes' must be an object.", "attributes")
    found[1]["attributes"] = attributes
    return json_response(found[1])


async def _delete_file(request: Request) -> Response:
    found = _store_file(request)
    if isinstance(found, Response):
        return found
    store, attached = found
    del store.files[attached["id"]]
    _refresh(_files(request), store)
    return json_response({"id": attached["id"], "object": "vector_store.file.deleted", "deleted": True})


async def _file_content(request: Request) -> Response:
    found = _store_file(request)
    if isinstance(found, Response):
        return found
    stored = _files(request).files.get(found[1]["id"])
    text = stored.path.read_text("utf-8", "replace") if stored else ""
    data = [{"type": "text", "text": text}]
    return json_response(
        {"object": "vector_store.file_content.page", "data": data, "has_more": False, "next_page": None}
    )


async def _create_batch(request: Request) -> Response:
    store = _store(request)
    if isinstance(store, Response):
        return store
    body = _body(request)
    entries = [{"file_id": f} for f in body.get("file_ids") or []] + list(body.get("files") or [])
    if not entries:
        return bad_request("Give file_ids or files.", "file_ids")
    attached = [
        _attach(request, store, e.get("file_id"), e.get("attributes") or body.get("attributes")) for e in entries
    ]
    if any(a is None for a in attached):
        return bad_request("A file was not found.", "file_ids")
    obj = {
        "id": f"vsfb_{secrets.token_hex(12)}",
        "object": "vector_store.files_batch",
        "created_at": int(time.time()),
        "vector_store_id": store.obj["id"],
        "status": "completed",
        "file_counts": {
            "in_progress": 0,
            "completed": len(entries),
            "failed": 0,
            "cancelled": 0,
            "total": len(entries),
        },
        "file_ids": [a["id"] for a in attached if a],
    }
    store.batches[obj["id"]] = obj
    return json_response({k: v for k, v in obj.items() if k != "file_ids"})


def _batch(request: Request) -> tuple[MockVectorStore, dict[str, Any]] | Response:
    store = _store(request)
    if isinstance(store, Response):
        return store
    batch = store.batches.get(request.path_params["batch_id"])
    if batch is None:
        return not_found(f"No file batch found with id '{request.path_params['batch_id']}'.")
    return store, batch


async def _retrieve_batch(request: Request) -> Response:
    found = _batch(request)
    return (
        found if isinstance(found, Response) else json_response({k: v for k, v in found[1].items() if k != "file_ids"})
    )


async def _cancel_batch(request: Request) -> Response:
    found = _batch(request)
    if isinstance(found, Response):
        return found
    found[1]["status"] = "cancelled"
    return json_response({k: v for k, v in found[1].items() if k != "file_ids"})


async def _batch_files(request: Request) -> Response:
    found = _batch(request)
    if isinstance(found, Response):
        return found
    store, batch = found
    return list_page(request, [store.files[f] for f in batch["file_ids"] if f in store.files])


_STORE = "/v1/vector_stores/{vector_store_id}"
ROUTES: list[Route] = [
    Route("/v1/vector_stores", _create, methods=["POST"]),
    Route("/v1/vector_stores", _list, methods=["GET"]),
    Route(_STORE, _retrieve, methods=["GET"]),
    Route(_STORE, _update, methods=["POST"]),
    Route(_STORE, _delete, methods=["DELETE"]),
    Route(_STORE + "/search", _search, methods=["POST"]),
    Route(_STORE + "/files", _create_file, methods=["POST"]),
    Route(_STORE + "/files", _list_files, methods=["GET"]),
    Route(_STORE + "/files/{file_id}", _retrieve_file, methods=["GET"]),
    Route(_STORE + "/files/{file_id}", _update_file, methods=["POST"]),
    Route(_STORE + "/files/{file_id}", _delete_file, methods=["DELETE"]),
    Route(_STORE + "/files/{file_id}/content", _file_content, methods=["GET"]),
    Route(_STORE + "/file_batches", _create_batch, methods=["POST"]),
    Route(_STORE + "/file_batches/{batch_id}", _retrieve_batch, methods=["GET"]),
    Route(_STORE + "/file_batches/{batch_id}/cancel", _cancel_batch, methods=["POST"]),
    Route(_STORE + "/file_batches/{batch_id}/files", _batch_files, methods=["GET"]),
]
