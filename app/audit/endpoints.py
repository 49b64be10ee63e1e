"""``GET /admin/audit``: the trail of admin actions and support access, newest first."""

from __future__ import annotations

from fastapi import APIRouter

from app.api_keys.dependencies import AdminPrincipal
from app.audit import service
from app.audit.dependencies import AuditPage, Filter
from app.audit.schemas import AuditEvent
from app.db import SessionDep
from app.kit.pagination import CursorPage, cursor_page

router = APIRouter(prefix="/admin/audit", tags=["admin: audit"])


@router.get("", response_model=CursorPage[AuditEvent])
async def list_audit_events(
    session: SessionDep, _: AdminPrincipal, found: Filter, page: AuditPage
) -> CursorPage[AuditEvent]:
    rows, has_more = await service.page(session, found, page)
    return cursor_page([AuditEvent.model_validate(r) for r in rows], has_more)
