"""What Tollgate reads from vector store requests and upstream's answers; everything else in a
body is forwarded as the client sent it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from starlette.responses import Response

from app.errors import InvalidRequest, UpstreamError

# OpenAI's own limits on one request's files.
MAX_STORE_FILES = 500
MAX_BATCH_FILES = 2000


def file_ids_of(body: dict[str, Any], *, single: bool = False, limit: int = MAX_STORE_FILES) -> list[str]:
    """Every file id a vector store request names (``file_id``, ``file_ids``, ``files[].file_id``):
    each must be the caller's before anything is sent upstream."""
    if single:
        file_id = body.get("file_id")
        if not isinstance(file_id, str) or not file_id:
            raise InvalidRequest("Missing required parameter: 'file_id'.", param="file_id")
        return [file_id]
    ids = _strings(body.get("file_ids"), "file_ids", limit)
    files = body.get("files")
    if files is not None:
        if not isinstance(files, list) or len(files) > limit:
            raise InvalidRequest(f"'files' must be a list of at most {limit} objects.", param="files")
        for index, entry in enumerate(files):
            file_id = entry.get("file_id") if isinstance(entry, dict) else None
            if not isinstance(file_id, str) or not file_id:
                raise InvalidRequest(f"files[{index}] needs a 'file_id' string.", param=f"files[{index}].file_id")
            ids.append(file_id)
    return ids


def _strings(value: Any, param: str, limit: int) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > limit or not all(isinstance(v, str) and v for v in value):
        raise InvalidRequest(f"'{param}' must be a list of at most {limit} file id strings.", param=param)
    return list(value)


def upstream_object(content: bytes) -> dict[str, Any]:
    """Upstream's object, with the id every ownership record needs; a malformed one is a 502."""
    try:
        parsed = json.loads(content)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("id"), str) or not parsed["id"]:
        raise UpstreamError("The upstream API returned a malformed response.")
    return parsed


def usage_bytes_of(obj: dict[str, Any]) -> int:
    value = obj.get("usage_bytes")
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def list_of(snapshots: Sequence[dict[str, Any]], has_more: bool) -> Response:
    """OpenAI's list envelope over stored snapshots, which are relayed as upstream wrote them."""
    first, last = (snapshots[0]["id"], snapshots[-1]["id"]) if snapshots else (None, None)
    body = {"object": "list", "data": list(snapshots), "first_id": first, "last_id": last, "has_more": has_more}
    return Response(json.dumps(body), media_type="application/json")
