"""Upstream's model list names every tenant's fine-tuned models; each caller sees only its own."""

from __future__ import annotations

import json
import time
from typing import Any, cast

from app.api_keys.schemas import Principal
from app.gateway.catalog import ModelCatalog
from app.gateway.upstream import Upstream

MINE, THEIRS = "ft:gpt-4o-mini:org::mine", "ft:gpt-4o-mini:org::theirs"


def _principal(user_id: str) -> Principal:
    return Principal("key", "", user_id, user_id, None, "member", None, None)


async def test_the_model_list_hides_other_tenants_fine_tuned_models() -> None:
    catalog = ModelCatalog(cast(Upstream, None), ttl_s=300)
    catalog._models = {m: {"id": m, "object": "model"} for m in ("gpt-4o-mini", MINE, THEIRS)}
    catalog._fetched_at = time.monotonic()
    catalog.fine_tuned_access = lambda principal, model: model == MINE and principal.user_id == "alice"

    def ids(response: Any) -> list[str]:
        return [m["id"] for m in json.loads(response.body)["data"]]

    assert ids(await catalog.list_for(_principal("alice"))) == ["gpt-4o-mini", MINE]
    assert ids(await catalog.list_for(_principal("bob"))) == ["gpt-4o-mini"]
    assert catalog.hidden(_principal("bob"), MINE) and not catalog.hidden(_principal("alice"), MINE)
