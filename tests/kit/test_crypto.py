"""Sealing stored secrets (upstream keys): authenticated, bound to the secret key and the purpose,
and cryptography's OpenSSL stays out of a worker that never seals anything."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from app.kit.crypto import Sealer, SealError

ROOT = Path(__file__).resolve().parents[2]


def test_a_sealed_value_opens_only_with_the_same_secret_and_purpose() -> None:
    sealed = Sealer(b"s" * 32, "upstream-keys").seal("sk-upstream")
    assert "sk-upstream" not in sealed
    assert Sealer(b"s" * 32, "upstream-keys").unseal(sealed) == "sk-upstream"
    for other in (Sealer(b"t" * 32, "upstream-keys"), Sealer(b"s" * 32, "other-purpose")):
        with pytest.raises(SealError):
            other.unseal(sealed)
    with pytest.raises(SealError):
        Sealer(b"s" * 32, "upstream-keys").unseal(sealed[:-4] + "AAAA")


def test_a_worker_that_seals_nothing_never_imports_cryptography() -> None:
    code = "import sys, app.main; app.main.create_app(); print('cryptography' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
