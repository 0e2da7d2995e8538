"""A tenant's resources outside PostgreSQL: its bucket and its vector space(s)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.errors import NotFound
from shared.store.tenants import TenantRow

if TYPE_CHECKING:
    from shared.model_spaces import ModelSpaces
    from shared.storage import ObjectStore
    from shared.vectors import VectorIndex


class TenantResources:
    """Made at sign-up, removed when the sweeper purges a deleted tenant. Both are
    idempotent, so a failed attempt is simply retried."""

    def __init__(self, storage: ObjectStore, vectors: VectorIndex, models: ModelSpaces):
        self.storage, self.vectors, self.models = storage, vectors, models

    def platform_space(self) -> str:
        """The shared vector space a new tenant starts in (the platform's active model)."""
        return self.models.platform_space()

    def provision(self, tenant: TenantRow) -> None:
        """Make the tenant's bucket and vector space."""
        self.storage.ensure_bucket(tenant.minio_bucket_name)
        self.vectors.ensure_space(tenant.qdrant_collection_name, self.models.platform_spec().dim)

    def release(self, tenant: TenantRow, spaces: set[str]) -> None:
        """Remove the tenant's bucket, and its vectors from each space: a space of its own is
        dropped, a shared one loses the tenant's points."""
        self.storage.remove_bucket(tenant.minio_bucket_name)
        for space in spaces:
            try:
                if space.startswith(f"tenant_{tenant.id}_"):
                    self.vectors.drop_space(space)
                else:
                    self.vectors.delete_tenant(space, tenant_id=tenant.id)
            except NotFound:
                pass
