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

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import Field

from functions.admin.failed_events import router as failed_events_router
from functions.admin.models import router as models_router
from shared.auth.principal import Principal
from shared.http import authenticated, container
from shared.models import ApiModel
from shared.status import service_for

router = APIRouter(tags=["admin"])
# Flat, not include_router: every function's router lists its own routes (the route inventory
# of the attack suite and the infra checks walk router.routes).
router.routes.extend(models_router.routes)
router.routes.extend(failed_events_router.routes)
Auth = Annotated[Principal, Depends(authenticated)]


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
def analytics(tenant_id: uuid.UUID, request: Request, principal: Auth) -> dict[str, Any]:
    return container(request).admin.analytics(principal, tenant_id)


@router.post("/api/tenants/{tenant_id}/suspend", status_code=204)
def suspend(tenant_id: uuid.UUID, request: Request, principal: Auth) -> Response:
    container(request).admin.set_status(principal, tenant_id, "Suspended")
    return Response(status_code=204)


@router.post("/api/tenants/{tenant_id}/reactivate", status_code=204)
def reactivate(tenant_id: uuid.UUID, request: Request, principal: Auth) -> Response:
    container(request).admin.set_status(principal, tenant_id, "Active")
    return Response(status_code=204)


@router.delete("/api/tenants/{tenant_id}", status_code=204)
def delete_tenant(tenant_id: uuid.UUID, request: Request, principal: Auth) -> Response:
    container(request).admin.delete_tenant(principal, tenant_id)
    return Response(status_code=204)


@router.get("/api/collections", response_model=list[CollectionOut])
def collections(request: Request, principal: Auth) -> list[CollectionOut]:
    return [
        CollectionOut(name=s.name, vectors=s.vectors, dimension=s.dim, distance=s.distance)
        for s in container(request).admin.collections(principal)
    ]


@router.post("/api/collections/{name}", status_code=201, response_model=CollectionOut)
def create_collection(
    name: CollectionName, body: CollectionIn, request: Request, principal: Auth
) -> CollectionOut:
    container(request).admin.create_collection(principal, name, body.vector_size, body.distance)
    return CollectionOut(name=name, vectors=0, dimension=body.vector_size, distance="Cosine")


@router.delete("/api/collections/{name}", status_code=204)
def delete_collection(
    name: CollectionName, request: Request, principal: Auth, force: bool = False
) -> Response:
    container(request).admin.delete_collection(principal, name, force=force)
    return Response(status_code=204)


@router.get("/api/admin/status")
def platform_status(request: Request, principal: Auth) -> dict[str, Any]:
    """Backlog, throughput, failures in the last hour and per-stage latency (system admins;
    the same metrics /metrics exposes, see shared/status.py)."""
    principal.require_system_admin()
    return service_for(container(request).db).status()


def warm(c: Any) -> None:
    """Start sampling the counters at start-up, so the last hour is an hour."""
    service_for(c.db).start()
