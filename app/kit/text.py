"""Text PostgreSQL cannot store: NUL characters and unpaired UTF-16 surrogates.

Both are valid in a JSON string (as ``\\u0000`` and a lone ``\\ud800``) and so pass the JSON
parser and the request models, but ``text`` and ``jsonb`` columns refuse them: left alone, they
turn a bad request into a 500 halfway through the handler. They are refused at the door instead.
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.requests import Request

from app.errors import InvalidRequest

# Only a body holding one of these escapes can decode to unstorable text; a raw NUL or an
# encoded surrogate is already invalid JSON or invalid UTF-8. A valid surrogate pair also
# matches, so a match means "look closer", not "refuse".
_SUSPECT_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def unstorable_text_error(param: str) -> InvalidRequest:
    param = param[:200]
    return InvalidRequest(
        f"'{param}' holds a NUL character or an unpaired UTF-16 surrogate, which Tollgate does not accept.",
        param=param,
        code="invalid_value",
    )


def refuse_unstorable_json(raw: bytes, parsed: Any = None) -> None:
    """Raises InvalidRequest naming the first string (key or value) that holds unstorable text.
    ``parsed`` is the already-decoded ``raw``, if the caller has it."""
    if not _SUSPECT_ESCAPE.search(raw):
        return
    value = json.loads(raw) if parsed is None else parsed
    pending: list[tuple[str, Any]] = [("", value)]
    while pending:  # a loop, not recursion: nesting depth is the client's choice
        path, item = pending.pop()
        if isinstance(item, str):
            if _UNSTORABLE.search(item):
                raise unstorable_text_error(path or "body")
        elif isinstance(item, dict):
            for key, child in item.items():
                child_path = f"{path}.{key}" if path else str(key)
                if _UNSTORABLE.search(key):
                    raise unstorable_text_error(path or "body")
                pending.append((child_path, child))
        elif isinstance(item, list):
            pending.extend((f"{path}[{i}]", child) for i, child in enumerate(item))


def has_unstorable_text(text: str) -> bool:
    return _UNSTORABLE.search(text) is not None


async def refuse_unstorable_body(request: Request) -> None:
    """Router dependency. Only routes with a declared JSON body are looked at: FastAPI has read
    and parsed that body already, so reading it here costs nothing and cannot bypass a limit.
    Routes that read their own bodies (the metered calls, uploads) check them as they read."""
    route = request.scope.get("route")
    if getattr(route, "body_field", None) is None:
        return
    content_type = request.headers.get("content-type", "")
    if "multipart/" in content_type or "x-www-form-urlencoded" in content_type:
        return
    refuse_unstorable_json(await request.body())
