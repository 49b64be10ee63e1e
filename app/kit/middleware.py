"""Per-request context as a pure ASGI middleware (no BaseHTTPMiddleware: it buffers streams)."""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import error_body
from app.kit.logging import request_id_var

log = logging.getLogger("tollgate.request")


class RequestContextMiddleware:
    """Gives every request an id (logged on every line, returned as ``x-request-id``) and logs
    one line when the response has been sent."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = f"req_{secrets.token_hex(12)}"
        started = time.perf_counter()
        state = scope.setdefault("state", {})
        state["request_id"], state["started"] = request_id, started
        token = request_id_var.set(request_id)
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            principal = state.get("principal")
            log.info(
                "%s %s %s",
                scope["method"],
                scope["path"],
                status,
                extra={
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    "key_id": getattr(principal, "key_id", None),
                },
            )
            request_id_var.reset(token)


class BodyLimitMiddleware:
    """Refuses a declared Content-Length over the limit before a byte of the body is read.

    Bodies without a trustworthy length (chunked) are counted where they are read, so a
    client cannot get past the limit by lying. ``streamed`` gives the routes whose bodies are
    relayed rather than read (file uploads) limits of their own.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, streamed: Sequence[tuple[re.Pattern[str], int]] = ()) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.streamed = streamed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"content-length" and value.isdigit():
                    limit = self._limit(scope["path"])
                    if int(value) > limit:
                        await self._refuse(send, limit)
                        return
        await self.app(scope, receive, send)

    def _limit(self, path: str) -> int:
        for pattern, limit in self.streamed:
            if pattern.match(path):
                return limit
        return self.max_bytes

    async def _refuse(self, send: Send, limit: int) -> None:
        body = error_body(
            f"Request body is larger than the {limit} byte limit.",
            "invalid_request_error",
            code="request_too_large",
        )
        headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
