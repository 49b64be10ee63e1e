"""Times every request, puts Tollgate's own latency in its response headers, and counts it.

Overhead is defined as the time from the request's arrival at Tollgate (this, the outermost
middleware) to the moment Tollgate sends the response headers, minus the time within it that
Tollgate waited for upstream answers (from sending each upstream request until its headers
and, for answers read whole, its body; failed attempts of a failover included). A JSON answer
is sent right after its headers, so that is its whole overhead; a stream's headers go out as
soon as upstream's arrive, so for streams it is the overhead to the first byte.

Two headers carry it on every response, errors included: ``x-tollgate-overhead-ms`` and
``x-tollgate-upstream-ms`` (the upstream wait it excludes).
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import error_body
from app.kit.timing import RequestTimer, current_timer
from app.metrics.service import record_request

OVERHEAD_HEADER = b"x-tollgate-overhead-ms"
UPSTREAM_HEADER = b"x-tollgate-upstream-ms"
UNMATCHED = "unmatched"


class MetricsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        timer = RequestTimer(time.perf_counter())
        token = current_timer.set(timer)
        status = 500
        overhead: float | None = None

        async def send_timed(message: Message) -> None:
            nonlocal status, overhead
            if message["type"] == "http.response.start":
                status = message["status"]
                upstream = timer.upstream_s
                overhead = max(time.perf_counter() - timer.started - upstream, 0.0)
                headers = list(message.get("headers", ()))
                headers.append((OVERHEAD_HEADER, b"%.3f" % (overhead * 1000)))
                headers.append((UPSTREAM_HEADER, b"%.3f" % (upstream * 1000)))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_timed)
        except Exception:
            if overhead is None:
                # Starlette's last-resort 500 is sent outside every middleware, without the headers
                # every response carries; send the same envelope from here instead.
                await _internal_error(scope, send_timed)
            raise
        finally:
            current_timer.reset(token)
            route = scope.get("route")
            path = getattr(route, "path", UNMATCHED)
            record_request(path, status, timer.model, time.perf_counter() - timer.started, overhead)


async def _internal_error(scope: Scope, send: Send) -> None:
    body = error_body("The server had an error processing your request.", "server_error")
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    request_id = scope.get("state", {}).get("request_id")
    if request_id:
        headers.append((b"x-request-id", request_id.encode()))
    await send({"type": "http.response.start", "status": 500, "headers": headers})
    await send({"type": "http.response.body", "body": body})
