"""Usage reports and the ledger: a caller's own (``/v1/usage``) and everyone's (``/admin/usage``)."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from app.api_keys.dependencies import AdminPrincipal, CurrentPrincipal
from app.api_keys.service import resolve_scope_id
from app.db import SessionDep
from app.kit.pagination import CursorPage, Page
from app.usage import reports
from app.usage.dependencies import Records, Report
from app.usage.schemas import UsageRecordRead, UsageReport

router = APIRouter(prefix="/v1/usage", tags=["usage"])
admin_router = APIRouter(prefix="/admin/usage", tags=["admin: usage"])

_CSV: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {}}, "description": "JSON, or CSV with format=csv or Accept: text/csv"}
}
_COLUMNS = (
    "requests",
    "prompt_tokens",
    "cached_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "cost_micros",
    "cost_usd",
)


def render(report: UsageReport, as_csv: bool) -> Response:
    headers = {"x-tollgate-usage-source": report.source}
    if report.next_cursor is not None:
        headers["x-tollgate-next-cursor"] = report.next_cursor
    if not as_csv:
        return JSONResponse(report.model_dump(mode="json"), headers=headers)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*report.group_by, "start_time", "end_time", *_COLUMNS])
    for group in report.data:
        labels = [group.group[d] or "" for d in report.group_by]
        for b in group.buckets:
            times = [b.start_time.isoformat(), b.end_time.isoformat()]
            writer.writerow([*labels, *times, *(getattr(b, c) for c in _COLUMNS)])
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8", headers=headers)


@router.get("", response_model=UsageReport, responses=_CSV)
async def my_usage(params: Report, principal: CurrentPrincipal, session: SessionDep) -> Response:
    """The caller's own usage (every key of its user), grouped and bucketed."""
    filters = replace(params.query.filters, user_id=principal.user_id)
    return render(await reports.usage_report(session, params.scoped(filters)), params.csv)


@router.get("/records", response_model=CursorPage[UsageRecordRead])
async def my_records(
    query: Records, page: Page, principal: CurrentPrincipal, session: SessionDep
) -> CursorPage[UsageRecordRead]:
    scoped = replace(query, filters=replace(query.filters, user_id=principal.user_id))
    return await reports.list_records(session, scoped, page)


@admin_router.get("", response_model=UsageReport, responses=_CSV)
async def usage(
    params: Report, session: SessionDep, _: AdminPrincipal, user: str | None = None, team: str | None = None
) -> Response:
    """Everyone's usage; ``user`` and ``team`` take an id or a name, ``key`` an id."""
    filters = replace(
        params.query.filters,
        user_id=await resolve_scope_id(session, "user", user) if user is not None else None,
        team_id=await resolve_scope_id(session, "team", team) if team is not None else None,
    )
    return render(await reports.usage_report(session, params.scoped(filters)), params.csv)


@admin_router.get("/records", response_model=CursorPage[UsageRecordRead])
async def records(
    query: Records,
    page: Page,
    session: SessionDep,
    _: AdminPrincipal,
    user: str | None = None,
    team: str | None = None,
) -> CursorPage[UsageRecordRead]:
    filters = replace(
        query.filters,
        user_id=await resolve_scope_id(session, "user", user) if user is not None else None,
        team_id=await resolve_scope_id(session, "team", team) if team is not None else None,
    )
    return await reports.list_records(session, replace(query, filters=filters), page)
