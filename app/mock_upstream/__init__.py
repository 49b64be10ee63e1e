"""A fake OpenAI upstream (real HTTP server) for development and tests."""

from app.mock_upstream.chat import count_chat_prompt_tokens, count_tokens
from app.mock_upstream.prelude import LEAKED_API_KEY, MOCK_ORGANIZATION, MockControls
from app.mock_upstream.server import MODELS, MockConfig, RecordedRequest, create_mock_app, serve

__all__ = [
    "LEAKED_API_KEY",
    "MOCK_ORGANIZATION",
    "MODELS",
    "MockConfig",
    "MockControls",
    "RecordedRequest",
    "count_chat_prompt_tokens",
    "count_tokens",
    "create_mock_app",
    "serve",
]
