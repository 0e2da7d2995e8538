"""Images: upload (validated completely before anything is stored), list, read, delete.

Every call is scoped to the caller's tenant in SQL; another tenant's id is simply not found.
"""

from __future__ import annotations

import builtins
import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, LiteralString

from events import types
from events.codec import make_event
from events.payloads import ImageDeleted, ImageUploaded
from shared.auth.principal import Principal
from shared.config import Settings
from shared.db import Database, execute, fetch_all, fetch_dicts, fetch_one
from shared.errors import Conflict, NotFound, PayloadTooLarge
from shared.imaging import validate_upload
from shared.models import TenantRow
from shared.storage import ObjectStore, original_key, thumb_key
from shared.telemetry import span
from shared.usage import UsageService, check_tenant_active

if TYPE_CHECKING:
    from events.publisher import Publisher
    from shared.vectors import VectorIndex


@dataclass
class ImageRow:
    id: uuid.UUID
    tenant_id: uuid.UUID
    filename: str
    content_type: str
    size_bytes: int
    sha256: str
    width: int | None
    height: int | None
    status: str
    failure_code: str | None
    failure_reason: str | None
    original_key: str
    thumb_256_key: str | None
    thumb_128_key: str | None
    thumbnails_bytes: int
    model: str | None
    vector_space: str | None
    uploaded_by: uuid.UUID | None
    uploaded_at: datetime
    validated_at: datetime | None
    extracted_at: datetime | None
    indexed_at: datetime | None
    updated_at: datetime
    deleted_at: datetime | None
    duplicate_of: uuid.UUID | None = None
    near_similarity: float | None = None
    phash: int | None = None


INSERT_IMAGE: LiteralString = """
INSERT INTO images (id, tenant_id, filename, content_type, size_bytes, sha256, width, height,
                    original_key, uploaded_by)
VALUES (%(id)s, %(tenant_id)s, %(filename)s, %(ctype)s, %(size)s, %(sha)s, %(w)s, %(h)s,
        %(key)s, %(by)s)
RETURNING *
"""
IMAGE_IN_TENANT: LiteralString = """
SELECT * FROM images WHERE id = %(id)s AND tenant_id = %(tenant_id)s AND deleted_at IS NULL
"""
LIST_IMAGES: LiteralString = """
SELECT * FROM images WHERE tenant_id = %(tenant_id)s AND deleted_at IS NULL
  AND (%(status)s::text IS NULL OR status = %(status)s)
ORDER BY uploaded_at DESC, id DESC LIMIT %(limit)s OFFSET %(offset)s
"""
COUNT_IMAGES: LiteralString = """
SELECT count(*) AS n FROM images WHERE tenant_id = %(tenant_id)s AND deleted_at IS NULL
  AND (%(status)s::text IS NULL OR status = %(status)s)
"""
SAME_BYTES: LiteralString = """
SELECT * FROM images WHERE tenant_id = %(t)s AND sha256 = %(sha)s AND deleted_at IS NULL
ORDER BY uploaded_at LIMIT 1
"""
REROOT: LiteralString = """
WITH heir AS (SELECT id FROM images WHERE duplicate_of = %(id)s AND tenant_id = %(t)s
              AND deleted_at IS NULL ORDER BY uploaded_at, id LIMIT 1)
UPDATE images SET duplicate_of = CASE WHEN id = (SELECT id FROM heir) THEN NULL
                                      ELSE (SELECT id FROM heir) END
WHERE duplicate_of = %(id)s AND tenant_id = %(t)s
"""
TENANT: LiteralString = "SELECT * FROM tenants WHERE id = %(id)s AND deleted_at IS NULL"


@dataclass
class Count:
    n: int


def active_tenant(conn: Any, tenant_id: uuid.UUID) -> TenantRow:
    return check_tenant_active(
        fetch_one(conn, TENANT, {"id": tenant_id}, table="tenants", row=TenantRow)
    )


class ImageService:
    def __init__(
        self,
        db: Database,
        storage: ObjectStore,
        publisher: Publisher,
        settings: Settings,
        *,
        vectors: Callable[[], VectorIndex],
    ):
        self.db, self.storage, self.publisher, self.settings = db, storage, publisher, settings
        self._vectors = vectors

    def upload(self, principal: Principal, *, filename: str, data: bytes) -> tuple[ImageRow, bool]:
        """Validate completely, store the original, record the row, emit image.uploaded.
        Returns the image and whether it is an exact duplicate.

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
                tenant = UsageService.lock_tenant(conn, tenant_id)
                same = fetch_one(
                    conn, SAME_BYTES, {"t": tenant_id, "sha": digest}, table="images", row=ImageRow
                )
                if same is None:
                    UsageService.check_storage(conn, tenant, len(data))
                    row = fetch_one(
                        conn,
                        INSERT_IMAGE,
                        {
                            "id": image_id,
                            "tenant_id": tenant_id,
                            "filename": filename,
                            "ctype": info.content_type,
                            "size": len(data),
                            "sha": digest,
                            "w": info.width,
                            "h": info.height,
                            "key": key,
                            "by": principal.user_id,
                        },
                        table="images",
                        row=ImageRow,
                    )
                    execute(
                        conn,
                        "INSERT INTO usage_daily (tenant_id, day, uploads) VALUES"
                        " (%(t)s, (now() AT TIME ZONE 'UTC')::date, 1) ON CONFLICT"
                        " (tenant_id, day) DO UPDATE SET uploads = usage_daily.uploads + 1",
                        {"t": tenant_id},
                        table="usage_daily",
                    )
            if same is not None:
                s.set_attribute("image.duplicate_of", str(same.id))
                if same.status == "uploaded":
                    # Most likely the client's retry of an upload whose answer was lost, maybe
                    # with the process that took it: the original may be missing and its event
                    # may never have gone out. Store the (same) bytes and emit again now, rather
                    # than leave the image to the sweeper; every step is idempotent.
                    self.storage.put(
                        tenant.minio_bucket_name, same.original_key, data, info.content_type
                    )
                    self._publish_uploaded(same, tenant.minio_bucket_name)
                return same, True
            try:
                self.storage.put(tenant.minio_bucket_name, key, data, info.content_type)
            except BaseException:
                with self.db.tx() as conn:
                    execute(
                        conn,
                        "DELETE FROM images WHERE id = %(id)s",
                        {"id": image_id},
                        table="images",
                    )
                raise
            assert row is not None
            self._publish_uploaded(row, tenant.minio_bucket_name)
            return row, False

    def _publish_uploaded(self, row: ImageRow, bucket: str) -> None:
        self.publisher.publish(
            make_event(
                types.IMAGE_UPLOADED,
                ImageUploaded(
                    image_id=row.id,
                    tenant_id=row.tenant_id,
                    bucket=bucket,
                    key=row.original_key,
                    filename=row.filename,
                    content_type=row.content_type,
                    size_bytes=row.size_bytes,
                    sha256=row.sha256,
                ),
                source="/deeplens/images",
            )
        )

    def get(self, principal: Principal, image_id: uuid.UUID) -> ImageRow:
        tenant_id = principal.require_tenant()
        with self.db.one() as conn:
            row = fetch_one(
                conn,
                IMAGE_IN_TENANT,
                {"id": image_id, "tenant_id": tenant_id},
                table="images",
                row=ImageRow,
            )
        if row is None:
            raise NotFound("image not found", code="image_not_found")
        return row

    def list(
        self, principal: Principal, *, page: int, page_size: int, status: str | None = None
    ) -> tuple[list[ImageRow], int]:
        tenant_id = principal.require_tenant()
        params = {
            "tenant_id": tenant_id,
            "status": status,
            "limit": page_size,
            "offset": (page - 1) * page_size,
        }
        with self.db.tenant_tx(tenant_id) as conn:
            rows = fetch_all(conn, LIST_IMAGES, params, table="images", row=ImageRow)
            total = fetch_one(conn, COUNT_IMAGES, params, table="images", row=Count)
        return rows, total.n if total else 0

    def _tenant(self, tenant_id: uuid.UUID) -> TenantRow:
        with self.db.tx() as conn:
            tenant = fetch_one(conn, TENANT, {"id": tenant_id}, table="tenants", row=TenantRow)
        if tenant is None:
            raise NotFound("tenant not found", code="tenant_not_found")
        return tenant

    def _bucket(self, tenant_id: uuid.UUID) -> str:
        return self._tenant(tenant_id).minio_bucket_name

    def content(self, principal: Principal, image_id: uuid.UUID) -> tuple[bytes, str]:
        row = self.get(principal, image_id)
        return self.storage.get(self._bucket(row.tenant_id), row.original_key), row.content_type

    def thumbnail(self, principal: Principal, image_id: uuid.UUID, size: int) -> bytes:
        row = self.get(principal, image_id)
        key = {256: row.thumb_256_key, 128: row.thumb_128_key}.get(size)
        if size not in (128, 256):
            raise NotFound("thumbnails exist in sizes 128 and 256", code="thumbnail_size")
        if key is None:
            raise Conflict("the thumbnail is not ready yet", code="thumbnail_not_ready")
        return self.storage.get(self._bucket(row.tenant_id), key)

    def vector(
        self, principal: Principal, image_id: uuid.UUID
    ) -> tuple[ImageRow, builtins.list[float]]:
        row = self.get(principal, image_id)
        if row.status != "indexed" or row.vector_space is None:
            raise Conflict("the image is not indexed yet", code="not_indexed")
        vec = self._vectors().get_vector(row.vector_space, tenant_id=row.tenant_id, point_id=row.id)
        if vec is None:
            raise NotFound("vector not found", code="vector_not_found")
        return row, vec

    def delete(self, principal: Principal, image_id: uuid.UUID) -> None:
        """Soft-delete at once (the image disappears from every read), then remove the
        objects, vector and row; the sweeper finishes whatever a crash interrupts."""
        row = self.get(principal, image_id)
        with self.db.tenant_tx(row.tenant_id) as conn:
            execute(
                conn,
                "UPDATE images SET deleted_at = now(), updated_at = now()"
                " WHERE id = %(id)s AND tenant_id = %(t)s",
                {"id": row.id, "t": row.tenant_id},
                table="images",
            )
        self.purge(row)
        self.publisher.publish(
            make_event(
                types.IMAGE_DELETED,
                ImageDeleted(image_id=row.id, tenant_id=row.tenant_id, space=row.vector_space),
                source="/deeplens/images",
            )
        )

    def purge(self, row: ImageRow) -> None:
        with span("image.purge", tenant_id=row.tenant_id, image_id=row.id):
            tenant = self._tenant(row.tenant_id)
            self.storage.delete(tenant.minio_bucket_name, original_key(row.id))
            for size in (256, 128):
                self.storage.delete(tenant.minio_bucket_name, thumb_key(row.id, size))
            # The tenant's space, not only row.vector_space: an image deleted mid-pipeline may
            # be indexed by a delivery already in flight.
            with self.db.tx() as conn:
                # Every space that holds it, and the tenant's other space (a copy in flight).
                held = fetch_dicts(
                    conn,
                    "SELECT space FROM image_spaces WHERE image_id = %(id)s UNION"
                    " SELECT other_space FROM tenant_models WHERE tenant_id = %(t)s"
                    " AND other_space IS NOT NULL",
                    {"id": row.id, "t": row.tenant_id},
                    table="image_spaces",
                )
            spaces = {row.vector_space, tenant.qdrant_collection_name} | {h["space"] for h in held}
            for space in spaces - {None}:
                try:
                    self._vectors().delete(str(space), tenant_id=row.tenant_id, point_ids=[row.id])
                except NotFound:
                    pass
            with self.db.tx() as conn:
                # Its duplicate group (if it was the root) gets the next earliest as root.
                execute(conn, REROOT, {"id": row.id, "t": row.tenant_id}, table="images")
                execute(
                    conn,
                    "DELETE FROM images WHERE id = %(id)s AND tenant_id = %(t)s"
                    " AND deleted_at IS NOT NULL",
                    {"id": row.id, "t": row.tenant_id},
                    table="images",
                )
