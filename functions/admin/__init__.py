"""admin: tenant analytics, vector collections, failed events, tenant lifecycle.

Routes: GET /api/tenants/{id}/analytics; POST /api/tenants/{id}/suspend, /reactivate;
DELETE /api/tenants/{id}; GET /api/collections; POST/DELETE /api/collections/{name};
GET /api/admin/status (live platform status); failed events under /api/admin/failed-events
(functions/admin/failed_events.py); the model lifecycle under /api/admin/models
(functions/admin/models.py).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Response
from pydantic import Field

from functions.admin.failed_events import router as failed_events_router
from functions.admin.models import router as models_router
from shared.http import Auth, Services
from shared.models import ApiModel
from shared.status import service_for

router = APIRouter(tags=["admin"])
# Flat, not include_router: every function's router lists its own routes (the route inventory
# of the attack suite and the infra checks walk router.routes).
router.routes.extend(models_router.routes)
router.routes.extend(failed_events_router.routes)


class CollectionOut(ApiModel):
    name: str
    vectors: int
    dimension: int
    distance: str


class CollectionIn(ApiModel):
    vector_size: Annotated[int, Field(ge=1, le=8192)]
    distance: Literal["Cosine"] = "Cosine"


CollectionName = Annotated[str, Path(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9_-]+$")]


@router.get("/api/tenants/{tenant_id}/analytics")
def analytics(tenant_id: uuid.UUID, principal: Auth, c: Services) -> dict[str, Any]:
    return c.analytics.tenant(principal, tenant_id=tenant_id)


@router.post("/api/tenants/{tenant_id}/suspend", status_code=204)
def suspend(tenant_id: uuid.UUID, principal: Auth, c: Services) -> Response:
    c.tenants.set_status(principal, tenant_id=tenant_id, status="Suspended")
    return Response(status_code=204)


@router.post("/api/tenants/{tenant_id}/reactivate", status_code=204)
def reactivate(tenant_id: uuid.UUID, principal: Auth, c: Services) -> Response:
    c.tenants.set_status(principal, tenant_id=tenant_id, status="Active")
    return Response(status_code=204)


@router.delete("/api/tenants/{tenant_id}", status_code=204)
def delete_tenant(tenant_id: uuid.UUID, principal: Auth, c: Services) -> Response:
    c.tenants.delete(principal, tenant_id=tenant_id)
    return Response(status_code=204)


@router.get("/api/collections", response_model=list[CollectionOut])
def collections(principal: Auth, c: Services) -> list[CollectionOut]:
    return [
        CollectionOut(name=s.name, vectors=s.vectors, dimension=s.dim, distance=s.distance)
        for s in c.collections.list(principal)
    ]


@router.post("/api/collections/{name}", status_code=201, response_model=CollectionOut)
def create_collection(
    name: CollectionName, body: CollectionIn, principal: Auth, c: Services
) -> CollectionOut:
    c.collections.create(principal, name=name, size=body.vector_size, distance=body.distance)
    return CollectionOut(name=name, vectors=0, dimension=body.vector_size, distance="Cosine")


@router.delete("/api/collections/{name}", status_code=204)
def delete_collection(
    name: CollectionName, principal: Auth, c: Services, force: bool = False
) -> Response:
    c.collections.delete(principal, name=name, force=force)
    return Response(status_code=204)


@router.get("/api/admin/status")
def platform_status(principal: Auth, c: Services) -> dict[str, Any]:
    """Backlog, throughput, failures in the last hour and per-stage latency (system admins;
    the same metrics /metrics exposes, see shared/status.py)."""
    principal.require_system_admin()
    return service_for(c.db).status()


def warm(c: Any) -> None:
    """Start sampling the counters at start-up, so the last hour is an hour."""
    service_for(c.db).start()
