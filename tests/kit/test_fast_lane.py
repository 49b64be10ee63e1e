"""The fast lane: the metered routes are served without FastAPI's router, exactly as FastAPI
would serve them; every other request goes the ordinary way."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.routing import APIRoute
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app.config import Settings
from app.errors import GatewayError, InvalidRequest, install_error_handlers
from app.kit.fast_lane import FastLane, request_only
from app.main import create_app


def build() -> tuple[FastAPI, list[str]]:
    """A FastAPI app whose router records what reaches it, behind a fast lane for /hot."""
    app = FastAPI()
    install_error_handlers(app)
    reached: list[str] = []

    @app.post("/hot")
    async def hot(request: Request) -> Response:
        body = await request.json()
        if body.get("refuse"):
            raise InvalidRequest("refused", param="refuse")
        if body.get("break"):
            raise RuntimeError("a bug")
        return JSONResponse({"route": request.scope["route"].path, "got": body})

    @app.post("/cold")
    async def cold(request: Request) -> Response:
        return JSONResponse({"cold": True})

    class Recorder:
        """Innermost middleware: whatever reaches it is on its way to FastAPI's router."""

        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            reached.append(scope["path"])
            await self.app(scope, receive, send)

    app.add_middleware(Recorder)
    routes = [r for r in app.router.routes if isinstance(r, APIRoute) and r.path == "/hot"]
    app.add_middleware(FastLane, routes=routes, handlers=app.exception_handlers)
    return app, reached


@pytest.fixture
async def lane() -> AsyncIterator[tuple[httpx.AsyncClient, list[str]]]:
    app, reached = build()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        yield client, reached


async def test_a_hot_route_is_served_without_the_router(lane: tuple[httpx.AsyncClient, list[str]]) -> None:
    client, reached = lane
    answer = await client.post("/hot", json={"a": 1})
    assert answer.status_code == 200
    assert answer.json() == {"route": "/hot", "got": {"a": 1}}
    assert reached == []
    assert (await client.post("/cold", json={})).json() == {"cold": True}
    assert reached == ["/cold"]


async def test_other_methods_and_paths_go_the_ordinary_way(lane: tuple[httpx.AsyncClient, list[str]]) -> None:
    client, reached = lane
    assert (await client.get("/hot")).status_code == 405
    assert (await client.post("/hot/", json={})).status_code in (200, 307)
    assert reached == ["/hot", "/hot/"]


async def test_errors_get_the_handlers_answer(lane: tuple[httpx.AsyncClient, list[str]]) -> None:
    client, _ = lane
    answer = await client.post("/hot", json={"refuse": True})
    assert answer.status_code == 400
    assert answer.json() == {
        "error": {"message": "refused", "type": "invalid_request_error", "param": "refuse", "code": None}
    }


async def test_an_unhandled_error_is_left_to_the_server_error_layer(
    lane: tuple[httpx.AsyncClient, list[str]],
) -> None:
    client, _ = lane
    with pytest.raises(RuntimeError, match="a bug"):
        await client.post("/hot", json={"break": True})


def test_a_route_that_needs_fastapi_is_refused() -> None:
    app = FastAPI()

    @app.post("/items/{item_id}")
    async def item(item_id: str, request: Request) -> Response:
        return Response()

    @app.post("/query")
    async def query(q: int, request: Request) -> Response:
        return Response()

    routes = [r for r in app.router.routes if isinstance(r, APIRoute)]
    assert not any(request_only(r) for r in routes)
    with pytest.raises(ValueError, match="more than the request"):
        FastLane(app, routes, {})


def test_a_gateway_error_subclass_finds_its_base_handler() -> None:
    lane_ = FastLane(FastAPI(), [], {GatewayError: lambda *_: None})
    assert lane_._handler_for(InvalidRequest("x")) is not None
    assert lane_._handler_for(RuntimeError("x")) is None


async def test_tollgates_metered_routes_take_the_lane(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the lane, FastAPI's route handling would run for chat; with it, only for the rest."""
    handled: list[str] = []
    original = APIRoute.handle

    async def spy(self: APIRoute, scope: Scope, receive: Receive, send: Send) -> None:
        handled.append(self.path)
        await original(self, scope, receive, send)

    monkeypatch.setattr(APIRoute, "handle", spy)
    app = create_app(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        for path in ("/v1/chat/completions", "/v1/embeddings", "/v1/completions", "/v1/moderations", "/v1/responses"):
            answer = await client.post(path, json={"model": "gpt-4o-mini"})
            assert answer.status_code == 401
            assert answer.json()["error"]["message"].startswith("You didn't provide an API key")
        assert handled == []
        await client.get("/v1/models")
        assert handled == ["/v1/models"]
