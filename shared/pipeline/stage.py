"""What every stage starts and fails with: the image and its tenant read in the tenant's own
transaction, and a permanent failure recorded there."""

from __future__ import annotations

import uuid

from events.codec import Event
from shared.config import Settings
from shared.db import Database
from shared.errors import DeepLensError
from shared.pipeline import replies
from shared.storage import ObjectStore
from shared.store.images import ImageRow, stages
from shared.store.tenants import TenantRow

# How far along the pipeline each status is ('failed' is outside it).
ORDER = {"uploaded": 0, "validated": 1, "extracted": 2, "indexed": 3}


class Stage:
    def __init__(self, db: Database, storage: ObjectStore, settings: Settings):
        self.db, self.storage, self.settings = db, storage, settings

    def load(
        self, *, tenant_id: uuid.UUID, image_id: uuid.UUID
    ) -> tuple[ImageRow, TenantRow] | None:
        """The image and its tenant in one round trip; None when either is deleted (the
        stage then has nothing to do)."""
        with self.db.tenant_tx(tenant_id) as conn:
            return stages.with_tenant(conn, tenant_id=tenant_id, image_id=image_id)

    def fail(self, row: ImageRow, stage: str, exc: DeepLensError, cause: Event) -> Event:
        """Mark the image failed (a permanent error) and reply image.failed."""
        with self.db.tenant_tx(row.tenant_id) as conn:
            stages.mark_failed(
                conn, tenant_id=row.tenant_id, image_id=row.id, code=exc.code, reason=exc.message
            )
        return replies.failed(row, stage, exc, cause)
