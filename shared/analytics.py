"""A tenant's analytics: usage against its plan's limits, the last 30 days, the backlog."""

from __future__ import annotations

import uuid
from typing import Any

from shared.auth.principal import Principal
from shared.db import Database
from shared.errors import NotFound
from shared.store import analytics, tenants, usage, users
from shared.telemetry import span


class AnalyticsService:
    def __init__(self, db: Database):
        self.db = db

    def tenant(self, principal: Principal, *, tenant_id: uuid.UUID) -> dict[str, Any]:
        """The tenant's analytics (its admins, or a system admin); one consistent read."""
        principal.scope(tenant_id)
        principal.require_role("Admin")
        with span("tenant.analytics", tenant_id=tenant_id), self.db.tenant_tx(tenant_id) as conn:
            tenant = tenants.get(conn, tenant_id=tenant_id)
            if tenant is None:
                raise NotFound("tenant not found", code="tenant_not_found")
            img = analytics.images(conn, tenant_id=tenant_id)
            days = usage.last_days(conn, tenant_id=tenant_id, days=30)
            active_users = users.count_active(conn, tenant_id=tenant_id)
            today = usage.today(conn)
        current = next((d for d in days if d.day == today), None)
        return {
            "tenantId": str(tenant.id),
            "tier": tenant.tier,
            "status": tenant.status,
            "storageUsed": int(img.storage),
            "storageLimit": tenant.max_storage_bytes,
            "imageCount": int(img.images),
            "users": active_users,
            "userLimit": tenant.max_users,
            "apiCallsToday": int(current.api_calls) if current else 0,
            "apiCallLimit": tenant.max_api_calls_per_day,
            "searchesToday": int(current.searches) if current else 0,
            "uploadsToday": int(current.uploads) if current else 0,
            "apiCallsLast30Days": [
                {"date": d.day.isoformat(), "calls": int(d.api_calls)} for d in days
            ],
            "pipelineBacklog": {
                "uploaded": int(img.uploaded),
                "validated": int(img.validated),
                "extracted": int(img.extracted),
            },
            "failedImages": int(img.failed),
        }
