"""Fields Tollgate sets on a forwarded body (the output cap, include_usage) leave the client's bytes alone."""

from __future__ import annotations

import json

from app.gateway.service import with_fields


def test_a_missing_field_is_spliced_in_front_of_the_clients_own_bytes() -> None:
    raw = b'  {"model": "gpt-4o-mini",  "messages": [{"role": "user", "content": "caf\\u00e9"}], "x": 1.50}'
    body = json.loads(raw)
    merged, forwarded = with_fields(body, raw, {"max_completion_tokens": 42})
    assert (
        forwarded
        == b'  {"max_completion_tokens":42,"model": "gpt-4o-mini",  "messages": ' + raw.split(b'"messages": ')[1]
    )
    assert json.loads(forwarded) == merged == {**body, "max_completion_tokens": 42}


def test_a_field_the_client_sent_is_replaced_not_duplicated() -> None:
    raw = b'{"model":"m","stream_options":{"include_obfuscation":false}}'
    body = json.loads(raw)
    options = {**body["stream_options"], "include_usage": True}
    merged, forwarded = with_fields(body, raw, {"stream_options": options})
    assert forwarded.count(b"stream_options") == 1
    assert json.loads(forwarded) == merged
    assert merged["stream_options"] == {"include_obfuscation": False, "include_usage": True}


def test_an_empty_object_stays_valid_json() -> None:
    merged, forwarded = with_fields({}, b"{ }", {"a": 1})
    assert json.loads(forwarded) == merged == {"a": 1}
