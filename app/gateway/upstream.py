"""The one pooled HTTP client to upstream, and the translation of its failures.

Upstream error bodies are never relayed as they are: they can name the organization or quote
fragments of the upstream key. Client-side errors (4xx about the request itself) keep their
type, param and code with the message scrubbed; everything else gets Tollgate's own words.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import httpx

from app.config import UpstreamSettings
from app.errors import (
    GatewayError,
    InvalidRequest,
    NotFound,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTimeout,
)

log = logging.getLogger("tollgate.upstream")

_LEAKY = re.compile(
    r"(sk-[A-Za-z0-9_\-*]{3,}|org-[A-Za-z0-9_\-]+|proj_[A-Za-z0-9_\-]+|user-[A-Za-z0-9]{8,}|"
    r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,})"
)
_RELAYED_CLIENT_ERRORS = {400: InvalidRequest, 404: NotFound, 422: InvalidRequest}


class Upstream:
    def __init__(self, settings: UpstreamSettings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        timeout = httpx.Timeout(
            connect=settings.connect_timeout_s,
            read=settings.read_timeout_s,
            write=settings.read_timeout_s,
            pool=settings.connect_timeout_s,
        )
        limits = httpx.Limits(
            max_connections=settings.max_connections,
            max_keepalive_connections=settings.max_connections,
            keepalive_expiry=30,
        )
        self.client = httpx.AsyncClient(
            base_url=settings.base_url,
            headers={"authorization": f"Bearer {settings.api_key.get_secret_value()}"},
            timeout=timeout,
            limits=limits,
            transport=transport,
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    async def send(self, method: str, path: str, body: bytes | None = None, stream: bool = False) -> httpx.Response:
        """Sends once and never retries: a retry could double-bill or duplicate side effects.

        A non-2xx answer is turned into a GatewayError here, before anything reaches the client.
        """
        headers = {"content-type": "application/json"} if body is not None else {}
        if stream:
            headers["accept"] = "text/event-stream"
        request = self.client.build_request(method, path, content=body, headers=headers)
        try:
            response = await self.client.send(request, stream=stream)
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout("The upstream did not answer in time.") from exc
        except httpx.HTTPError as exc:
            log.warning("upstream connection failed: %s", type(exc).__name__)
            raise UpstreamError("Could not reach the upstream API.") from exc
        if response.status_code >= 400:
            try:
                content = await response.aread()
            except httpx.HTTPError:
                content = b""
            finally:
                await response.aclose()
            raise translate_error(response.status_code, content, response.headers)
        return response


def scrub(text: str) -> str:
    return _LEAKY.sub("[redacted]", text)


def translate_error(status: int, content: bytes, headers: httpx.Headers) -> GatewayError:
    log.warning("upstream answered %s", status)
    if status in _RELAYED_CLIENT_ERRORS:
        detail = _error_detail(content)
        message = scrub(str(detail.get("message") or "The upstream rejected the request."))
        error = _RELAYED_CLIENT_ERRORS[status](message, param=_str_or_none(detail.get("param")))
        error.status_code = status
        error.code = _str_or_none(detail.get("code"))
        return error
    if status == 429:
        retry_after = headers.get("retry-after", "")
        extra = {"retry-after": retry_after} if retry_after.isdigit() else {}
        return UpstreamRateLimited("The upstream API is rate limiting requests; retry later.", headers=extra)
    if status in (401, 403):
        return UpstreamError(
            "The upstream API refused Tollgate's credentials; an administrator must check them.",
            code="upstream_auth_error",
        )
    if status == 408:
        return UpstreamTimeout("The upstream did not answer in time.")
    return UpstreamError(f"The upstream API failed with status {status}.")


def _error_detail(content: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(content)
    except ValueError:
        return {}
    error = parsed.get("error") if isinstance(parsed, dict) else None
    return error if isinstance(error, dict) else {}


def _str_or_none(value: object) -> str | None:
    return scrub(value) if isinstance(value, str) else None
