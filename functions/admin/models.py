"""Model lifecycle routes (system administrators only): status, migrate, cutover, rollback,
cleanup, reindex, and operators' own ONNX models.

GET /api/admin/models; POST /api/admin/models/migrate {to, tenantId?};
POST /api/admin/models/{cutover|rollback|cleanup|reindex} {tenantId?};
GET /api/admin/models/custom; POST /api/admin/models/custom {name, source, inputSize, mean,
std, dimension, pooling}.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from shared.custom_models import Registration
from shared.http import Auth, Services
from shared.models import ApiModel

router = APIRouter(tags=["models"])
# No NUL or control characters in any text field.
PLAIN = r"^[^\x00-\x1f\x7f]+$"
Ref = Annotated[str, Field(min_length=1, max_length=200, pattern=PLAIN)]


class MigrateIn(ApiModel):
    to: Ref
    tenant_id: uuid.UUID | None = None


class TenantIn(ApiModel):
    tenant_id: uuid.UUID | None = None


class RegisterIn(ApiModel):
    name: Annotated[str, Field(min_length=1, max_length=63, pattern=PLAIN)]
    source: Annotated[str, Field(min_length=1, max_length=2000, pattern=PLAIN)]
    input_size: Annotated[int, Field(ge=32, le=1024)]
    mean: Annotated[list[float], Field(min_length=3, max_length=3)] = [0.485, 0.456, 0.406]
    std: Annotated[list[float], Field(min_length=3, max_length=3)] = [0.229, 0.224, 0.225]
    dimension: Annotated[int, Field(ge=8, le=8192)]
    pooling: Annotated[str, Field(pattern="^(inside|avg|gem)$")] = "inside"


@router.get("/api/admin/models")
def status(c: Services, principal: Auth, tenant_id: uuid.UUID | None = None) -> Any:
    return c.migrations.status(principal, tenant_id=tenant_id)


@router.post("/api/admin/models/migrate", status_code=202)
def migrate(body: MigrateIn, c: Services, principal: Auth) -> Any:
    return c.migrations.migrate(principal, body.to, tenant_id=body.tenant_id)


@router.post("/api/admin/models/cutover")
def cutover(body: TenantIn, c: Services, principal: Auth) -> Any:
    return {"tenants": c.migrations.cutover(principal, tenant_id=body.tenant_id)}


@router.post("/api/admin/models/rollback")
def rollback(body: TenantIn, c: Services, principal: Auth) -> Any:
    return {"tenants": c.migrations.rollback(principal, tenant_id=body.tenant_id)}


@router.post("/api/admin/models/cleanup")
def cleanup(body: TenantIn, c: Services, principal: Auth) -> Any:
    return {"tenants": c.migrations.cleanup(principal, tenant_id=body.tenant_id)}


@router.post("/api/admin/models/reindex", status_code=202)
def reindex(body: TenantIn, c: Services, principal: Auth) -> Any:
    n = c.migrations.reindex(principal, tenant_id=body.tenant_id)
    return {"tenantsQueued": n}


@router.get("/api/admin/models/custom")
def custom(c: Services, principal: Auth) -> Any:
    return c.custom_models.list(principal)


@router.post("/api/admin/models/custom", status_code=201)
async def register(body: RegisterIn, c: Services, principal: Auth) -> dict[str, Any]:
    reg = Registration(
        name=body.name,
        source=body.source,
        input_size=body.input_size,
        mean=(body.mean[0], body.mean[1], body.mean[2]),
        std=(body.std[0], body.std[1], body.std[2]),
        dim=body.dimension,
        pooling=body.pooling,
    )
    # Fetching and probing a model is slow and blocking: off the event loop.
    result: dict[str, Any] = await run_in_threadpool(c.custom_models.register, principal, reg)
    return result
