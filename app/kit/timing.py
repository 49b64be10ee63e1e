"""Where a request's time goes: Tollgate's own work, or waiting for upstream.

The outermost middleware starts a ``RequestTimer`` for every request and puts it in a context
variable; the upstream client adds the time it waits for each answer. Tollgate's overhead is
then the request's time so far minus that wait. A context variable rather than a parameter:
the upstream client is reached through many domains, none of which should carry timing.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(slots=True)
class RequestTimer:
    started: float
    upstream_s: float = 0.0
    # The model the request was admitted for; set only once it is known to be served and priced,
    # so a client cannot create metric series by sending made-up model names.
    model: str = ""


current_timer: ContextVar[RequestTimer | None] = ContextVar("tollgate_request_timer", default=None)


def add_upstream_wait(since: float) -> None:
    """Counts the time from ``since`` (a ``perf_counter`` reading) to now as waiting for upstream."""
    timer = current_timer.get()
    if timer is not None:
        timer.upstream_s += time.perf_counter() - since


def set_request_model(model: str) -> None:
    timer = current_timer.get()
    if timer is not None:
        timer.model = model
