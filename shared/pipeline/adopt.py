"""Object-store adoption: an S3 ``ObjectCreated`` notification (MinIO → Kafka → KafkaSource).

An object the API stored already has its row, and the API's image.uploaded drives it: the
notification is then a no-op, so nothing is processed twice. An original put into a tenant
bucket directly (``images/<uuid>/original``) is adopted: validated, given a row, then processed
exactly like an upload.
"""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from typing import Any
from urllib.parse import unquote_plus

from events.codec import Event
from shared.config import Settings
from shared.db import Database
from shared.errors import DeepLensError, TransientError
from shared.imaging import validate_upload
from shared.pipeline import replies
from shared.pipeline.process import Process
from shared.storage import ObjectStore, original_key
from shared.store import images, tenants
from shared.store.tenants import TenantRow
from shared.usage import UsageService
from shared.validation import filename_ok

log = logging.getLogger(__name__)
ORIGINAL_KEY = re.compile(
    r"^images/([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})/original$"
)


class Adoption:
    def __init__(self, db: Database, storage: ObjectStore, settings: Settings, process: Process):
        self.db, self.storage, self.settings, self.process = db, storage, settings, process

    def object_created(self, data: dict[str, Any], cause: Event) -> Event | None:
        """The first original the notification names that has no row yet is adopted; the
        reply is process-image's."""
        for record in data.get("Records") or []:
            if not str(record.get("eventName", "")).startswith("s3:ObjectCreated"):
                continue
            s3 = record.get("s3") or {}
            bucket = str((s3.get("bucket") or {}).get("name", ""))
            obj = s3.get("object") or {}
            match = ORIGINAL_KEY.match(unquote_plus(str(obj.get("key", ""))))
            if not bucket or match is None:
                continue  # thumbnails and foreign objects
            image_id = uuid.UUID(match.group(1))
            # Platform-wide: the bucket names the tenant, and an id any tenant holds already
            # (stored by the API, or someone else's) is never adopted.
            with self.db.tx() as conn:
                tenant = tenants.by_bucket(conn, bucket=bucket)
                if tenant is None:
                    return None
                exists = images.exists_anywhere(conn, image_id=image_id)
            if exists:
                return None
            meta = {k.lower(): v for k, v in (obj.get("userMetadata") or {}).items()}
            filename = str(meta.get("x-amz-meta-filename") or "").strip()
            if not filename or not filename_ok(filename):
                filename = str(image_id)  # what an upload would refuse, replaced, not stored
            return self._adopt(tenant, image_id, filename, cause)
        return None

    def _adopt(
        self, tenant: TenantRow, image_id: uuid.UUID, filename: str, cause: Event
    ) -> Event | None:
        key = original_key(image_id)
        try:
            blob = self.storage.get(tenant.minio_bucket_name, key)
            info, _ = validate_upload(blob, filename, max_pixels=self.settings.max_image_pixels)
        except TransientError:
            raise
        except DeepLensError as exc:
            log.warning("not adopting %s/%s: %s", tenant.minio_bucket_name, key, exc.code)
            return None
        with self.db.tenant_tx(tenant.id) as conn:
            # As for an upload: only an active tenant's objects, within its storage limit.
            try:
                locked = tenants.lock_active(conn, tenant_id=tenant.id)
                UsageService.check_storage(conn, locked, len(blob))
            except DeepLensError as exc:
                log.warning("not adopting %s/%s: %s", tenant.minio_bucket_name, key, exc.code)
                return None
            row = images.insert(
                conn,
                tenant_id=tenant.id,
                image_id=image_id,
                filename=filename,
                content_type=info.content_type,
                size_bytes=len(blob),
                sha256=hashlib.sha256(blob).hexdigest(),
                width=info.width,
                height=info.height,
                original_key=key,
            ) or images.get(conn, tenant_id=tenant.id, image_id=image_id)
        if row is None:
            return None  # taken meanwhile by another tenant, or deleted
        return self.process.on_uploaded(
            replies.uploaded_payload(row, tenant.minio_bucket_name), cause
        )
