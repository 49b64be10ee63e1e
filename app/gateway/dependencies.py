from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from app.errors import InvalidRequest, PayloadTooLarge
from app.kit.text import refuse_unstorable_json


async def read_json_object(request: Request) -> tuple[bytes, dict[str, Any]]:
    """The raw body (to forward unchanged) and its parse (to meter it).

    A declared oversize was already refused by BodyLimitMiddleware; a chunked body is cut off
    here as soon as it passes the limit.
    """
    limit: int = request.app.state.settings.gateway.max_body_bytes
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"Request body is larger than the {limit} byte limit.")
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise InvalidRequest(
            "We could not parse the JSON body of your request. The body must be valid UTF-8 JSON.",
            code="invalid_json",
        ) from exc
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    refuse_unstorable_json(raw, body)
    return raw, body
