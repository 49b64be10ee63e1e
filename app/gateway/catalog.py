"""``/v1/models``: upstream's list, cached, and filtered to what the caller's key may use."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import anyio
from starlette.responses import JSONResponse, Response

from app.api_keys.schemas import Principal
from app.errors import UpstreamError
from app.gateway.upstream import Upstream


class ModelCatalog:
    def __init__(self, upstream: Upstream, ttl_s: float) -> None:
        self._upstream = upstream
        self._ttl = ttl_s
        self._models: dict[str, dict[str, Any]] = {}
        self._fetched_at = float("-inf")
        self._lock = anyio.Lock()
        # Who may see a fine-tuned (ft:) model; upstream lists every tenant's. Set at start.
        self.fine_tuned_access: Callable[[Principal, str], bool] | None = None

    def hidden(self, principal: Principal, model: str) -> bool:
        access = self.fine_tuned_access
        return access is not None and model.startswith("ft:") and not access(principal, model)

    async def list_for(self, principal: Principal) -> Response:
        models = await self._load()
        if principal.allowed_models is None:
            data = list(models.values())
        else:
            # A restricted key sees its models even when upstream does not list them
            # (a private or self-hosted model routed by name).
            data = [models.get(m) or _synthetic(m) for m in sorted(principal.allowed_models)]
        data = [m for m in data if not self.hidden(principal, str(m["id"]))]
        return JSONResponse({"object": "list", "data": data})

    async def retrieve(self, model: str) -> Response:
        models = await self._load()
        if model in models:
            return JSONResponse(models[model])
        # Quoted whole, so an id like "../files" cannot reach another upstream route.
        response = await self._upstream.request("GET", f"/models/{quote(model, safe='')}", model=model)
        return Response(response.content, media_type="application/json")

    async def _load(self) -> dict[str, dict[str, Any]]:
        if time.monotonic() - self._fetched_at < self._ttl:
            return self._models
        async with self._lock:
            if time.monotonic() - self._fetched_at >= self._ttl:
                response = await self._upstream.request("GET", "/models")
                try:
                    listed = json.loads(response.content)["data"]
                    self._models = {m["id"]: m for m in listed if isinstance(m, dict) and "id" in m}
                except (ValueError, KeyError, TypeError) as exc:
                    raise UpstreamError("The upstream API returned a malformed model list.") from exc
                self._fetched_at = time.monotonic()
        return self._models


def _synthetic(model: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": 0, "owned_by": "tollgate"}
