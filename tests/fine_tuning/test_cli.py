"""``tollgate fine-tuned``: grants made from the command line reach running replicas on their
next refresh, including for a fine-tuned model made outside Tollgate."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import openai
import pytest
from typer.testing import CliRunner

from app.cli.main import cli
from app.config import get_settings
from tests.fine_tuning.helpers import eventually
from tests.fixtures.live_server import LiveServer
from tests.fixtures.servers import HMAC_SECRET, Admin

MODEL = "ft:gpt-4o-mini-2024-07-18:elsewhere::cli1"
HELLO = [{"role": "user", "content": "Say hello"}]


@pytest.fixture
def cli_env(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("TOLLGATE_SECRET_KEY", HMAC_SECRET)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


async def _run(*args: str) -> str:
    result = await asyncio.to_thread(CliRunner().invoke, cli, list(args))
    assert result.exit_code == 0, result.output
    return str(result.output)


async def test_grant_list_and_revoke_from_the_cli(polling_tollgate: LiveServer, admin: Admin, cli_env: None) -> None:
    tenant = await admin.tenant()
    client = tenant.client(polling_tollgate.url)
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(model=MODEL, messages=HELLO)  # type: ignore[arg-type]

    await _run("fine-tuned", "grant", MODEL, "--user", tenant.user_name)
    listed = json.loads(await _run("fine-tuned", "list", "--json"))
    assert {"id": MODEL, "owner": None, "base_model": None, "job_id": None, "users": [tenant.user_id], "teams": []} in [
        {k: v for k, v in m.items() if k != "object"} for m in listed
    ]

    async def served() -> bool | None:
        try:
            await client.chat.completions.create(model=MODEL, messages=HELLO)  # type: ignore[arg-type]
        except openai.NotFoundError:
            return None
        return True

    await eventually(served)  # priced by genai-prices' own ft:gpt-4o-mini-2024-07-18 entry

    await _run("fine-tuned", "revoke", MODEL, "--user", tenant.user_name)

    async def refused() -> bool | None:
        return None if await served() else True

    await eventually(refused)
