"""Tollgate's Prometheus metrics, and the calls that record them where the facts are known.

The instruments are module-level, as prometheus-client intends: several worker processes then
share one set of metric files (see ``app.metrics.multiprocess``). On the hot path a labelled
child is looked up in a plain dict keyed by its label values, not through ``labels()``, which
validates and takes a lock on every call. Label values are bounded: routes are path templates,
models are only ones Tollgate serves and prices, teams and upstreams are configured by admins.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Generic, TypeVar

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

M = TypeVar("M", bound=MetricWrapperBase)

# Whole requests: from a few ms (a cached model list) to minutes (a long stream).
_DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
# Tollgate's own time: fine resolution around the 1.5 ms target.
_OVERHEAD_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 1,
)  # fmt: skip
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

REQUESTS = Counter(
    "tollgate_requests",
    "HTTP requests answered, by route template, status class and model (empty when none applies).",
    ["route", "status_class", "model"],
)
REQUEST_DURATION = Histogram(
    "tollgate_request_duration_seconds",
    "Time from a request's arrival to its last response byte, upstream included.",
    ["route"],
    buckets=_DURATION_BUCKETS,
)
OVERHEAD = Histogram(
    "tollgate_overhead_seconds",
    "Tollgate's own added time up to the response headers: elapsed time minus the time spent waiting "
    "for upstream answers. For streams this is the overhead to the first byte.",
    ["route"],
    buckets=_OVERHEAD_BUCKETS,
)
TOKENS = Counter(
    "tollgate_tokens",
    "Tokens written to the usage ledger, by model, team and kind. cached is part of prompt and "
    "reasoning part of completion, as OpenAI reports them.",
    ["model", "team", "kind"],
)
COST = Counter("tollgate_cost_micros", "Cost written to the usage ledger, in micro-dollars.", ["model", "team"])
BUDGET_REFUSALS = Counter("tollgate_budget_refusals", "Requests refused by a budget, by its scope.", ["scope"])
RATE_LIMIT_REFUSALS = Counter(
    "tollgate_rate_limit_refusals", "Requests refused by a rate limit, by reason.", ["reason"]
)
UPSTREAM_ERRORS = Counter(
    "tollgate_upstream_errors",
    "Failed upstream attempts (a failover counts each upstream tried), by upstream and kind.",
    ["upstream", "kind"],
)
OPEN_STREAMS = Gauge(
    "tollgate_open_streams", "Upstream streams being relayed or consumed right now.", multiprocess_mode="livesum"
)
PENDING_SETTLEMENTS = Gauge(
    "tollgate_pending_settlements",
    "Settlements queued or being written; the reservation holds their money meanwhile.",
    multiprocess_mode="livesum",
)
SETTLEMENT_BATCH = Histogram(
    "tollgate_settlement_batch_size", "Settlements written per database round trip.", buckets=_BATCH_BUCKETS
)
RESERVATION_BATCH = Histogram(
    "tollgate_reservation_batch_size", "Reservations made per database round trip.", buckets=_BATCH_BUCKETS
)
SETTLEMENT_FAILURES = Counter(
    "tollgate_settlement_failures", "Settlements whose write failed; the reaper charges their leases."
)
LEASES_REAPED = Counter("tollgate_leases_reaped", "Expired leases charged at their reserved amount.")

TOKEN_KINDS = (("prompt_tokens", "prompt"), ("cached_tokens", "cached"), ("completion_tokens", "completion"),
               ("reasoning_tokens", "reasoning"))  # fmt: skip


class Children(Generic[M]):
    """A metric's labelled children, cached by their label values."""

    def __init__(self, metric: M) -> None:
        self.metric = metric
        self.cache: dict[tuple[str, ...], M] = {}

    def __call__(self, *labels: str) -> M:
        child = self.cache.get(labels)
        if child is None:
            child = self.cache[labels] = self.metric.labels(*labels)
        return child


_requests = Children(REQUESTS)
_durations = Children(REQUEST_DURATION)
_overheads = Children(OVERHEAD)
_tokens = Children(TOKENS)
_cost = Children(COST)
_budget_refusals = Children(BUDGET_REFUSALS)
_rate_limit_refusals = Children(RATE_LIMIT_REFUSALS)
_upstream_errors = Children(UPSTREAM_ERRORS)
_STATUS_CLASSES = {n: f"{n}xx" for n in range(1, 6)}
# A backstop on label cardinality: models are checked before they get here, but a permissive
# upstream (a vLLM that answers any name for a free call) must not be able to grow the series.
MAX_MODEL_LABELS = 500
_models: set[str] = set()


def model_label(model: str) -> str:
    if model in _models:
        return model
    if len(_models) >= MAX_MODEL_LABELS:
        return "other"
    _models.add(model)
    return model


# (route, status, model) -> its three children, found with one lookup per request.
_request_children: dict[tuple[str, int, str], tuple[Counter, Histogram, Histogram]] = {}


def record_request(route: str, status: int, model: str, duration_s: float, overhead_s: float | None) -> None:
    key = (route, status, model_label(model))
    children = _request_children.get(key)
    if children is None:
        status_class = _STATUS_CLASSES.get(status // 100, "other")
        children = _request_children[key] = (
            _requests(route, status_class, key[2]),
            _durations(route),
            _overheads(route),
        )
    children[0].inc()
    children[1].observe(duration_s)
    if overhead_s is not None:
        children[2].observe(overhead_s)


def record_ledger_rows(rows: Iterable[Mapping[str, object]]) -> None:
    """Counts ledger rows once they are written, so the counters add up to the ledger."""
    for row in rows:
        model, team = model_label(str(row["model"])), str(row["team_id"] or "none")
        for column, kind in TOKEN_KINDS:
            amount = row[column]
            if isinstance(amount, int) and amount:
                _tokens(model, team, kind).inc(amount)
        cost = row["cost_micros"]
        if isinstance(cost, int) and cost:
            _cost(model, team).inc(cost)


def budget_refused(scope: str) -> None:
    _budget_refusals(scope).inc()


def rate_limit_refused(reason: str) -> None:
    _rate_limit_refusals(reason).inc()


def upstream_failed(upstream: str, kind: str) -> None:
    _upstream_errors(upstream, kind).inc()
