"""Images: upload (validated completely before anything is stored), list, read, delete.

Every call is scoped to the caller's tenant in SQL (shared/store/images); another tenant's id
is simply not found.
"""

from __future__ import annotations

import builtins
import hashlib
import uuid
from typing import TYPE_CHECKING

from shared.auth.principal import Principal
from shared.config import Settings
from shared.db import Database
from shared.errors import Conflict, InvalidInput, NotFound, PayloadTooLarge
from shared.imaging import validate_upload
from shared.pipeline import replies
from shared.storage import ObjectStore, original_key, thumb_key
from shared.store import images, model_spaces, tenants, usage
from shared.store.images import ImageRow, groups
from shared.store.tenants import TenantRow
from shared.telemetry import span
from shared.usage import UsageService
from shared.vectors import VectorIndex

if TYPE_CHECKING:
    from events.publisher import Publisher
    from shared.hotpath.asyncread import LoopReader

SOURCE = "/deeplens/images"
__all__ = ["ImageRow", "ImageService", "upload_priority"]

# What an upload may declare itself: ``live`` (the default; an interactive upload) or ``bulk``
# (an import: its pipeline work is served after every live image's, see events/publisher.py).
UPLOAD_PRIORITIES = ("live", "bulk")


def upload_priority(value: str) -> str | None:
    """The image.uploaded priority extension for an upload's ``priority`` (None: live);
    400 invalid_priority for anything outside the closed set."""
    if value == "live":
        return None
    if value not in UPLOAD_PRIORITIES:
        raise InvalidInput(
            f"priority must be one of {', '.join(UPLOAD_PRIORITIES)}", code="invalid_priority"
        )
    return value


class ImageService:
    def __init__(
        self,
        db: Database,
        storage: ObjectStore,
        publisher: Publisher,
        settings: Settings,
        *,
        vectors: VectorIndex,
    ):
        self.db, self.storage, self.publisher, self.settings = db, storage, publisher, settings
        self.vectors = vectors

    def upload(
        self, principal: Principal, *, filename: str, data: bytes, priority: str | None = None
    ) -> tuple[ImageRow, bool]:
        """Validate completely, store the original, record the row, emit image.uploaded (with
        ``priority``, see upload_priority). Returns the image and whether it is an exact
        duplicate.

        Exact duplicates (same bytes, same tenant) are not stored again: the answer is the
        existing image (documented rule: one copy per tenant; re-uploading is idempotent).
        Nothing is stored for a refused upload. If the process dies after the row is written
        but before the event is out, the sweeper re-emits it.
        """
        tenant_id = principal.require_tenant()
        if len(data) > self.settings.max_upload_bytes:
            raise PayloadTooLarge(
                f"images are limited to {self.settings.max_upload_bytes} bytes",
                code="file_too_large",
            )
        filename = (filename or "image").replace("\\", "/").rsplit("/", 1)[-1][:255] or "image"
        with span("image.upload", tenant_id=tenant_id) as s:
            info, _ = validate_upload(data, filename, max_pixels=self.settings.max_image_pixels)
            image_id = uuid.uuid4()
            s.set_attribute("image.id", str(image_id))
            digest = hashlib.sha256(data).hexdigest()
            key = original_key(image_id)
            # Row first, then the object: an S3 notification for the object then always finds
            # the row and leaves the image to this request (no double processing).
            with self.db.tenant_tx(tenant_id) as conn:
                tenant = tenants.lock_active(conn, tenant_id=tenant_id)
                same = images.same_bytes(conn, tenant_id=tenant_id, sha256=digest)
                if same is None:
                    UsageService.check_storage(conn, tenant, len(data))
                    row = images.insert(
                        conn,
                        tenant_id=tenant_id,
                        image_id=image_id,
                        filename=filename,
                        content_type=info.content_type,
                        size_bytes=len(data),
                        sha256=digest,
                        width=info.width,
                        height=info.height,
                        original_key=key,
                        uploaded_by=principal.user_id,
                    )
                    usage.add(conn, tenant_id=tenant_id, uploads=1)
            bucket = tenant.minio_bucket_name
            if same is not None:
                s.set_attribute("image.duplicate_of", str(same.id))
                if same.status == "uploaded":
                    # Most likely the client's retry of an upload whose answer was lost, maybe
                    # with the process that took it: the original may be missing and its event
                    # may never have gone out. Store the (same) bytes and emit again now, rather
                    # than leave the image to the sweeper; every step is idempotent.
                    self.storage.put(bucket, same.original_key, data, info.content_type)
                    self.publisher.publish(
                        replies.uploaded(same, bucket, source=SOURCE, priority=priority)
                    )
                return same, True
            try:
                self.storage.put(bucket, key, data, info.content_type)
            except BaseException:
                with self.db.tenant_tx(tenant_id) as conn:
                    images.forget(conn, tenant_id=tenant_id, image_id=image_id)
                raise
            assert row is not None
            self.publisher.publish(replies.uploaded(row, bucket, source=SOURCE, priority=priority))
            return row, False

    def get(self, principal: Principal, image_id: uuid.UUID) -> ImageRow:
        tenant_id = principal.require_tenant()
        # One autocommit round trip (the hot GET path); the statement filters by tenant.
        with self.db.one() as conn:
            row = images.get(conn, tenant_id=tenant_id, image_id=image_id)
        if row is None:
            raise NotFound("image not found", code="image_not_found")
        return row

    async def get_on_loop(
        self, principal: Principal, image_id: uuid.UUID, reader: LoopReader
    ) -> ImageRow:
        """``get`` awaited on the serving event loop (the hot GET path)."""
        tenant_id = principal.require_tenant()
        row = await images.get_on_loop(reader, tenant_id=tenant_id, image_id=image_id)
        if row is None:
            raise NotFound("image not found", code="image_not_found")
        return row

    def list(
        self, principal: Principal, *, page: int, page_size: int, status: str | None = None
    ) -> tuple[list[ImageRow], int]:
        tenant_id = principal.require_tenant()
        with self.db.tenant_tx(tenant_id) as conn:
            rows = images.page(
                conn,
                tenant_id=tenant_id,
                status=status,
                limit=page_size,
                offset=(page - 1) * page_size,
            )
            total = images.count(conn, tenant_id=tenant_id, status=status)
        return rows, total

    def _tenant(self, tenant_id: uuid.UUID) -> TenantRow:
        with self.db.tenant_tx(tenant_id) as conn:
            tenant = tenants.get(conn, tenant_id=tenant_id)
        if tenant is None:
            raise NotFound("tenant not found", code="tenant_not_found")
        return tenant

    def content(self, principal: Principal, image_id: uuid.UUID) -> tuple[bytes, str]:
        row = self.get(principal, image_id)
        bucket = self._tenant(row.tenant_id).minio_bucket_name
        return self.storage.get(bucket, row.original_key), row.content_type

    def thumbnail(self, principal: Principal, image_id: uuid.UUID, size: int) -> bytes:
        row = self.get(principal, image_id)
        key = {256: row.thumb_256_key, 128: row.thumb_128_key}.get(size)
        if size not in (128, 256):
            raise NotFound("thumbnails exist in sizes 128 and 256", code="thumbnail_size")
        if key is None:
            raise Conflict("the thumbnail is not ready yet", code="thumbnail_not_ready")
        return self.storage.get(self._tenant(row.tenant_id).minio_bucket_name, key)

    def vector(
        self, principal: Principal, image_id: uuid.UUID
    ) -> tuple[ImageRow, builtins.list[float]]:
        row = self.get(principal, image_id)
        if row.status != "indexed" or row.vector_space is None:
            raise Conflict("the image is not indexed yet", code="not_indexed")
        vec = self.vectors.get_vector(row.vector_space, tenant_id=row.tenant_id, point_id=row.id)
        if vec is None:
            raise NotFound("vector not found", code="vector_not_found")
        return row, vec

    def delete(self, principal: Principal, image_id: uuid.UUID) -> None:
        """Soft-delete at once (the image disappears from every read), then remove the
        objects, vector and row; the sweeper finishes whatever a crash interrupts."""
        row = self.get(principal, image_id)
        with self.db.tenant_tx(row.tenant_id) as conn:
            images.soft_delete(conn, tenant_id=row.tenant_id, image_id=row.id)
        self.purge(row)
        self.publisher.publish(replies.deleted(row, source=SOURCE))

    def purge(self, row: ImageRow) -> None:
        """Remove a soft-deleted image's objects, vectors and row (idempotent)."""
        with span("image.purge", tenant_id=row.tenant_id, image_id=row.id):
            tenant = self._tenant(row.tenant_id)
            self.storage.delete(tenant.minio_bucket_name, original_key(row.id))
            for size in (256, 128):
                self.storage.delete(tenant.minio_bucket_name, thumb_key(row.id, size))
            # The tenant's space, not only row.vector_space: an image deleted mid-pipeline may
            # be indexed by a delivery already in flight.
            with self.db.tx() as conn:  # model tables: the platform's own (no tenant role)
                held = model_spaces.spaces_of_image(conn, tenant_id=row.tenant_id, image_id=row.id)
            spaces = {row.vector_space, tenant.qdrant_collection_name, *held}
            for space in spaces - {None}:
                try:
                    self.vectors.delete(str(space), tenant_id=row.tenant_id, point_ids=[row.id])
                except NotFound:
                    pass
            with self.db.tenant_tx(row.tenant_id) as conn:
                # Its duplicate group (if it was the root) gets the next earliest as root.
                groups.reroot(conn, tenant_id=row.tenant_id, image_id=row.id)
                images.remove_deleted(conn, tenant_id=row.tenant_id, image_id=row.id)
