"""One error envelope everywhere: OpenAI's ``{"error": {message, type, param, code}}``.

Clients built on the official SDKs read ``body["error"]``, so every failure, ours or
upstream's, is rendered in that shape with the status OpenAI would use.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

log = logging.getLogger("tollgate.errors")


class GatewayError(Exception):
    status_code = 500
    type = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers = dict(headers or {})


class InvalidRequest(GatewayError):
    status_code = 400
    type = "invalid_request_error"


class PayloadTooLarge(InvalidRequest):
    status_code = 413
    code = "request_too_large"


class Unauthorized(GatewayError):
    status_code = 401
    type = "invalid_request_error"
    code = "invalid_api_key"

    def __init__(self, message: str = "Incorrect API key provided.") -> None:
        super().__init__(message, headers={"www-authenticate": "Bearer"})


class PermissionDenied(GatewayError):
    status_code = 403
    type = "invalid_request_error"
    code = "permission_denied"


class NotFound(GatewayError):
    status_code = 404
    type = "invalid_request_error"


class Conflict(GatewayError):
    status_code = 409
    type = "invalid_request_error"
    code = "conflict"


class UpstreamError(GatewayError):
    """Upstream failed. The message is ours: upstream text can name the org or show key fragments."""

    status_code = 502
    type = "server_error"
    code = "upstream_error"


class UpstreamAnswerLost(UpstreamError):
    """Upstream took the call and answered 2xx, but the answer could not be read whole (cut off,
    malformed, too large): upstream may have done, and billed, the work."""


class UpstreamTimeout(UpstreamError):
    status_code = 504
    code = "upstream_timeout"


class UpstreamRateLimited(UpstreamError):
    status_code = 429
    type = "rate_limit_error"
    code = "upstream_rate_limited"


class BudgetExceeded(GatewayError):
    """Not retryable by waiting a few seconds, so the SDKs are told not to retry it."""

    status_code = 429
    type = "insufficient_quota"


class RateLimited(GatewayError):
    status_code = 429
    type = "rate_limit_exceeded"
    code = "rate_limit_exceeded"


class ServiceUnavailable(GatewayError):
    status_code = 503
    code = "service_unavailable"


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> bytes:
    payload = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return json.dumps(payload, separators=(",", ":")).encode()


def error_response(
    status: int,
    message: str,
    type_: str,
    *,
    param: str | None = None,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    return Response(
        error_body(message, type_, param, code),
        status_code=status,
        media_type="application/json",
        headers=dict(headers or {}),
    )


# The handlers are async: Starlette runs a plain-def handler in a worker thread, a thread hop
# for every error answer (401s, 404s and refused budgets included).
async def _gateway_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    return error_response(exc.status_code, exc.message, exc.type, param=exc.param, code=exc.code, headers=exc.headers)


def unknown_url(request: Request) -> NotFound:
    """OpenAI's answer to a route it does not have."""
    return NotFound(f"Invalid URL ({request.method} {request.url.path})", code="unknown_url")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        return await _gateway_error(request, unknown_url(request))
    if exc.status_code == 405:
        message = f"Method {request.method} not allowed for {request.url.path}"
        return error_response(405, message, "invalid_request_error", code="method_not_allowed")
    type_ = "invalid_request_error" if exc.status_code < 500 else "server_error"
    return error_response(exc.status_code, str(exc.detail), type_, headers=exc.headers)


async def _validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first: dict[str, Any] = exc.errors()[0] if exc.errors() else {}
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
    param = ".".join(loc) or None
    message = first.get("msg", "Invalid request")
    if param:
        message = f"Invalid value for '{param}': {message}"
    return error_response(400, message, "invalid_request_error", param=param, code="invalid_value")


async def _client_gone(_: Request, exc: Exception) -> Response:
    """The client left before its request body arrived: nothing was metered and nobody is
    listening. Not an error of ours, so no traceback in the logs."""
    assert isinstance(exc, ClientDisconnect)
    return Response(status_code=499)


async def _unhandled(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "The server had an error processing your request.", "server_error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(GatewayError, _gateway_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ClientDisconnect, _client_gone)
    app.add_exception_handler(Exception, _unhandled)
