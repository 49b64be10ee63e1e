"""A fast lane past FastAPI's router for the few routes that carry nearly all the traffic.

FastAPI (0.16x) routes a request by walking every included router in turn, running the
matching one's match twice, and then solving the route's dependency graph even when it is
empty. On a metered chat call that was about a sixth of Tollgate's CPU (callgrind: 2.10 M
instructions per call through the router, 1.77 M through this lane). This middleware looks
the request up by its exact method and path instead, and calls the endpoint itself.

Only endpoints for which FastAPI has nothing to do qualify: a static path, and an endpoint that
takes the ``Request`` and nothing else (no parameters, no dependencies, no response model), so
it returns its own ``Response``. For those, FastAPI's work is exactly what is done here: put the
route on the scope, call the endpoint, send the response, and turn an exception into the
response its registered handler makes. The routes stay registered with FastAPI, so the OpenAPI
document, other methods (405) and a trailing-slash variant still go the ordinary way.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

Endpoint = Callable[[Request], Awaitable[Response]]
ExceptionHandlers = Mapping[Any, Callable[[Request, Exception], Any]]


def request_only(route: APIRoute) -> bool:
    """Whether FastAPI would do nothing for this route beyond calling it with the request."""
    dependant = route.dependant
    takes_request_only = (
        dependant.request_param_name is not None
        and not dependant.dependencies
        and not (dependant.path_params or dependant.query_params or dependant.header_params)
        and not (dependant.cookie_params or dependant.body_params)
    )
    return (
        takes_request_only
        and not route.param_convertors
        and route.response_model is None
        and inspect.iscoroutinefunction(route.endpoint)
    )


class FastLane:
    def __init__(self, app: ASGIApp, routes: Iterable[APIRoute], handlers: ExceptionHandlers) -> None:
        """``handlers`` is the app's own exception handler table (read at each error, so handlers
        registered later count); the one for ``Exception`` is left to the server-error layer
        outside, as Starlette does."""
        self.app = app
        self.handlers = handlers
        self.routes: dict[tuple[str, str], APIRoute] = {}
        for route in routes:
            if not request_only(route):
                raise ValueError(f"{route.path} needs FastAPI's routing: it takes more than the request")
            for method in route.methods or ():
                self.routes[(method, route.path)] = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.routes.get((scope.get("method", ""), scope.get("path", ""))) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        scope["route"], scope["endpoint"], scope["path_params"] = route, route.endpoint, {}
        request = Request(scope, receive, send)
        endpoint: Endpoint = route.endpoint
        try:
            response = await endpoint(request)
        except Exception as exc:
            handler = self._handler_for(exc)
            if handler is None:
                raise
            response = handler(request, exc)
            if inspect.isawaitable(response):
                response = await response
        await response(scope, receive, send)

    def _handler_for(self, exc: Exception) -> Callable[[Request, Exception], Any] | None:
        for cls in type(exc).__mro__:
            if cls is Exception:
                return None
            handler = self.handlers.get(cls)
            if handler is not None:
                return handler
        return None
