"""Per-request context as a pure ASGI middleware (no BaseHTTPMiddleware: it buffers streams)."""

from __future__ import annotations

import logging
import secrets
import time

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
    client cannot get past the limit by lying.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        upload_paths: frozenset[str] = frozenset(),
        max_upload_bytes: int = 0,
    ) -> None:
        """``upload_paths`` take multipart uploads, which have their own (larger) limit."""
        self.app = app
        self.max_bytes = max_bytes
        self.upload_paths = upload_paths
        self.max_upload_bytes = max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            limit = self.max_upload_bytes if scope["path"] in self.upload_paths else self.max_bytes
            for name, value in scope["headers"]:
                if name == b"content-length" and value.isdigit() and int(value) > limit:
                    await self._refuse(send, limit)
                    return
        await self.app(scope, receive, send)

    async def _refuse(self, send: Send, limit: int) -> None:
        body = error_body(
            f"Request body is larger than the {limit} byte limit.",
            "invalid_request_error",
            code="request_too_large",
        )
        headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
