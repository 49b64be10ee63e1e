"""API key material: a readable prefix plus 256 random bits, stored only as an HMAC digest."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

KEY_RANDOM_BYTES = 32  # 256 bits
DISPLAY_CHARS = 8


def generate_api_key(prefix: str) -> str:
    return f"{prefix}{secrets.token_urlsafe(KEY_RANDOM_BYTES)}"


def hash_api_key(token: str, secret: bytes) -> str:
    """HMAC rather than a bare hash so a leaked table cannot be checked offline without the secret."""
    return hmac.new(secret, token.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def display_prefix(token: str, prefix: str) -> str:
    """What lists show of a key: enough to tell keys apart, far too little to use."""
    return token[: len(prefix) + DISPLAY_CHARS]


def load_or_create_secret(path: Path) -> bytes:
    """Zero-config installs keep a generated HMAC secret on disk beside their SQLite file."""
    if path.exists():
        return path.read_bytes().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(32).encode()
    path.touch(mode=0o600)
    path.write_bytes(secret)
    return secret


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


class SealError(ValueError):
    """A sealed value that this key did not seal, or that was altered."""


class Sealer:
    """Authenticated encryption (Fernet) for secrets Tollgate must store (upstream keys), under a
    key derived from its own secret and the purpose, so one secret never serves two uses.

    cryptography is imported on first use: its OpenSSL build is 6.5 MB of a worker's memory, and
    most installs never seal anything."""

    def __init__(self, secret: bytes, purpose: str) -> None:
        self._key = base64.urlsafe_b64encode(
            hmac.new(secret, b"tollgate-seal:" + purpose.encode(), hashlib.sha256).digest()
        )
        self._fernet: Fernet | None = None

    def seal(self, plain: str) -> str:
        return self._cipher().encrypt(plain.encode()).decode()

    def unseal(self, sealed: str) -> str:
        from cryptography.fernet import InvalidToken

        try:
            return self._cipher().decrypt(sealed.encode()).decode()
        except InvalidToken as exc:
            raise SealError("sealed under another key, or altered") from exc

    def _cipher(self) -> Fernet:
        if self._fernet is None:
            from cryptography.fernet import Fernet

            self._fernet = Fernet(self._key)
        return self._fernet
