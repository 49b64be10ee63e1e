"""Routes Tollgate does not serve answer OpenAI's 404 envelope and never reach upstream; OpenAI's
admin API (``/v1/organization/...``) is refused ahead of every other route."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette

from app.config import Settings
from app.main import create_app
from tests.fixtures.live_server import LiveServer
from tests.fixtures.servers import ADMIN_KEY, Tenant

UNSERVED = [
    ("GET", "/v1/engines/davinci"),
    ("POST", "/v1/engines/davinci/completions"),
    ("GET", "/v1/dashboard/billing/usage"),
    ("DELETE", "/v1/no-such-route/abc"),
    ("GET", "/v1/files/file-x/content/raw"),
]
ORGANIZATION = [
    ("GET", "/v1/organization/costs"),
    ("POST", "/v1/organization/admin_api_keys"),
    ("GET", "/v1/organization/projects/proj_x/api_keys"),
    ("DELETE", "/v1/organization/users/user-x"),
    ("GET", "/v1/organization"),
]


def _assert_unknown_url(response: httpx.Response, method: str, path: str) -> None:
    assert response.status_code == 404, response.text
    assert response.json() == {
        "error": {
            "message": f"Invalid URL ({method} {path})",
            "type": "invalid_request_error",
            "param": None,
            "code": "unknown_url",
        }
    }


@pytest.mark.parametrize(("method", "path"), UNSERVED + ORGANIZATION)
@pytest.mark.parametrize("key", ["tenant", "admin"])
async def test_unserved_routes_are_an_openai_404_and_never_reach_upstream(
    tollgate: LiveServer, tenant: Tenant, mock_app: Starlette, method: str, path: str, key: str
) -> None:
    token = tenant.token if key == "tenant" else ADMIN_KEY
    async with httpx.AsyncClient(base_url=tollgate.url, headers={"authorization": f"Bearer {token}"}) as http:
        response = await http.request(method, path, json={} if method == "POST" else None)
    _assert_unknown_url(response, method, path)
    assert not [r for r in mock_app.state.requests if r.path == path]


async def test_the_organization_guard_comes_before_any_catch_all(settings: Settings) -> None:
    """Were a catch-all route ever added, the admin API would still not be reachable."""
    app = create_app(settings)

    @app.api_route("/v1/{rest:path}", methods=["GET", "POST"])
    async def catch_all() -> dict[str, str]:
        return {"served": "yes"}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        assert (await http.get("/v1/anything")).json() == {"served": "yes"}
        for method, path in ORGANIZATION:
            if method in ("GET", "POST"):
                _assert_unknown_url(await http.request(method, path), method, path)
