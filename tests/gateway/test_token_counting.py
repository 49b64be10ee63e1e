"""A Tollgate whose settings name a token server counts every metered prompt through it: the
worker loads no tiktoken table of its own."""

from __future__ import annotations

from app.cli.tokenizer import token_server
from app.config import Settings
from app.kit import tokens
from app.main import create_app
from tests.fixtures.live_server import LiveServer
from tests.fixtures.servers import Tenant


async def test_metered_prompts_are_counted_by_the_configured_token_server(settings: Settings, tenant: Tenant) -> None:
    with token_server(True) as path:
        assert path is not None
        gateway = settings.gateway.model_copy(update={"tokenizer_socket": path})
        with LiveServer(create_app(settings.model_copy(update={"gateway": gateway}))) as server:
            tokens.load_encoding.cache_clear()
            client = tenant.client(server.url)
            chat = await client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hello there"}]
            )
            embedded = await client.embeddings.create(model="text-embedding-3-small", input=["a", "b c"])
            assert chat.choices[0].message.content and embedded.data
            assert tokens.load_encoding.cache_info().currsize == 0, "the worker counted with its own tables"
    assert tokens._server is None, "the app's shutdown let go of the server"
