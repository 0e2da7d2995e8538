"""The pipeline steps behind the event functions: process (validate + thumbnails), extract,
index, and the sweeper. Each step is idempotent on the image id:

- a step whose output stage the image already passed answers with no event (nothing to do);
- a step whose output stage the image is exactly at re-emits its reply (the earlier reply may
  have been lost with a crash), with the same deterministic event id;
- permanent failures (a corrupt image) mark the image failed and reply image.failed;
- transient failures raise, so the broker redelivers.
"""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, LiteralString
from urllib.parse import unquote_plus

from psycopg import sql

from events import types
from events.codec import Event, make_event
from events.payloads import (
    FeaturesExtracted,
    ImageFailed,
    ImageIndexed,
    ImageReembed,
    ImageUploaded,
    ImageValidated,
)
from shared import local_features, metrics, verification
from shared.config import Settings
from shared.db import Database, execute, fetch_all, fetch_composed, fetch_one
from shared.errors import DeepLensError, TransientError
from shared.features.registry import ModelSpec, spec_for
from shared.images import ImageRow
from shared.imaging import open_image_sized, perceptual_hash, thumbnails, validate_upload
from shared.models import TenantRow
from shared.storage import ObjectStore, thumb_key
from shared.telemetry import span

if TYPE_CHECKING:
    from events.publisher import Publisher
    from shared.features.embedder import Embedder
    from shared.model_migrations import MigrationService
    from shared.model_spaces import ModelSpaces
    from shared.vectors import VectorIndex

log = logging.getLogger(__name__)
ORIGINAL_KEY = re.compile(r"^images/([0-9a-fA-F-]{36})/original$")
ORDER = {"uploaded": 0, "validated": 1, "extracted": 2, "indexed": 3}

IMAGE: LiteralString = """
SELECT * FROM images WHERE id = %(id)s AND tenant_id = %(tenant_id)s AND deleted_at IS NULL
"""
# The image row and its tenant's columns (prefixed t__) in one statement; the column list is
# composed from the TenantRow fields with sql.Identifier, never string formatting.
IMAGE_AND_TENANT = sql.SQL(
    "SELECT i.*, {tenant} FROM images i JOIN tenants t ON t.id = i.tenant_id"
    " WHERE i.id = %(id)s AND i.tenant_id = %(tenant_id)s"
    " AND i.deleted_at IS NULL AND t.deleted_at IS NULL"
).format(
    tenant=sql.SQL(", ").join(
        sql.SQL("t.{} AS {}").format(sql.Identifier(f.name), sql.Identifier("t__" + f.name))
        for f in fields(TenantRow)
    )
)


class PipelineService:
    def __init__(
        self,
        db: Database,
        storage: ObjectStore,
        vectors: Callable[[], VectorIndex],
        embedder: Callable[[], Embedder],
        settings: Settings,
        *,
        models: ModelSpaces,
        embedder_for: Callable[[ModelSpec], Embedder],
        migrations: Callable[[], MigrationService],
        publisher: Callable[[], Publisher],
    ):
        self.db, self.storage, self.settings = db, storage, settings
        self._vectors, self._embedder = vectors, embedder
        self.models, self._embedder_for = models, embedder_for
        self._migrations, self._publisher = migrations, publisher

    def _load(self, image_id: uuid.UUID, tenant_id: uuid.UUID) -> tuple[ImageRow, TenantRow] | None:
        """The image and its tenant in one round trip (every stage starts here)."""
        with self.db.one() as conn:
            found = fetch_composed(
                conn, IMAGE_AND_TENANT, {"id": image_id, "tenant_id": tenant_id}, table="images"
            )
        if not found:
            return None  # deleted meanwhile: nothing to do
        image = {k: v for k, v in found[0].items() if not k.startswith("t__")}
        tenant = {k[3:]: v for k, v in found[0].items() if k.startswith("t__")}
        return ImageRow(**image), TenantRow(**tenant)

    def _fail(self, row: ImageRow, stage: str, exc: DeepLensError, cause: Event) -> Event:
        with self.db.one() as conn:
            execute(
                conn,
                "UPDATE images SET status = 'failed', failure_code = %(c)s,"
                " failure_reason = %(r)s, updated_at = now() WHERE id = %(id)s",
                {"c": exc.code, "r": exc.message, "id": row.id},
                table="images",
            )
        return make_event(
            types.IMAGE_FAILED,
            ImageFailed(
                image_id=row.id,
                tenant_id=row.tenant_id,
                stage=stage,
                code=exc.code,
                reason=exc.message,
            ),
            source=f"/deeplens/{stage}",
            causation=cause,
        )

    # --- process-image -------------------------------------------------------------------
    @metrics.stage("process-image")
    def process(self, p: ImageUploaded, cause: Event) -> Event | None:
        loaded = self._load(p.image_id, p.tenant_id)
        if loaded is None:
            return None
        row, tenant = loaded
        if row.status == "failed" or ORDER.get(row.status, 0) > ORDER["validated"]:
            return None
        with span("image.process", tenant_id=row.tenant_id, image_id=row.id):
            bucket = tenant.minio_bucket_name
            if row.status == "uploaded":
                try:
                    data = self.storage.get(bucket, row.original_key)
                    # Thumbnails are at most 256 px: decode JPEGs at a reduced scale.
                    img, (width, height) = open_image_sized(
                        data, draft=(512, 512), max_pixels=self.settings.max_image_pixels
                    )
                except DeepLensError as exc:
                    if isinstance(exc, TransientError):
                        raise
                    return self._fail(row, "process-image", exc, cause)
                thumbs = thumbnails(img)
                phash = perceptual_hash(img)
                # Local features for geometric verification, from the image already decoded.
                local = local_features.extract_index(img) if self.settings.local_features else None
                for size, blob in thumbs.items():
                    self.storage.put(bucket, thumb_key(row.id, size), blob, "image/webp")
                with self.db.one() as conn:
                    if local is not None:
                        verification.save(conn, row.id, row.tenant_id, local)
                    execute(
                        conn,
                        "UPDATE images SET status = 'validated', width = %(w)s,"
                        " height = %(h)s, thumb_256_key = %(t256)s, thumb_128_key = %(t128)s,"
                        " thumbnails_bytes = %(tb)s, phash = %(ph)s, validated_at = now(),"
                        " updated_at = now()"
                        " WHERE id = %(id)s AND status = 'uploaded'",
                        {
                            "w": width,
                            "h": height,
                            "t256": thumb_key(row.id, 256),
                            "t128": thumb_key(row.id, 128),
                            "id": row.id,
                            "tb": sum(len(b) for b in thumbs.values()),
                            "ph": phash,
                        },
                        table="images",
                    )
            else:
                width, height = row.width or 0, row.height or 0
        return make_event(
            types.IMAGE_VALIDATED,
            ImageValidated(
                image_id=row.id,
                tenant_id=row.tenant_id,
                bucket=bucket,
                key=row.original_key,
                width=width,
                height=height,
                thumbnails={"256": thumb_key(row.id, 256), "128": thumb_key(row.id, 128)},
            ),
            source="/deeplens/process-image",
            causation=cause,
        )

    def object_created(self, data: dict[str, Any], cause: Event) -> Event | None:
        """An S3 ``ObjectCreated`` notification (MinIO → Kafka → KafkaSource).

        An object the API stored already has its row, and the API's image.uploaded drives it:
        the notification is then a no-op, so nothing is processed twice. An original put into
        a tenant bucket directly (``images/<uuid>/original``) is adopted: validated, given a
        row, then processed exactly like an upload.
        """
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
            with self.db.tx() as conn:
                tenant = fetch_one(
                    conn,
                    "SELECT * FROM tenants WHERE minio_bucket_name = %(b)s AND deleted_at IS NULL",
                    {"b": bucket},
                    table="tenants",
                    row=TenantRow,
                )
                if tenant is None:
                    return None
                exists = fetch_one(
                    conn,
                    "SELECT * FROM images WHERE id = %(id)s",
                    {"id": image_id},
                    table="images",
                    row=ImageRow,
                )
            if exists is not None:
                return None
            meta = {k.lower(): v for k, v in (obj.get("userMetadata") or {}).items()}
            filename = str(meta.get("x-amz-meta-filename") or f"{image_id}")
            return self._adopt(tenant, image_id, filename, cause)
        return None

    def _adopt(
        self, tenant: TenantRow, image_id: uuid.UUID, filename: str, cause: Event
    ) -> Event | None:
        key = f"images/{image_id}/original"
        try:
            blob = self.storage.get(tenant.minio_bucket_name, key)
            info, _ = validate_upload(blob, filename, max_pixels=self.settings.max_image_pixels)
        except DeepLensError as exc:
            if isinstance(exc, TransientError):
                raise
            log.warning("not adopting %s/%s: %s", tenant.minio_bucket_name, key, exc.code)
            return None
        with self.db.tx() as conn:
            execute(
                conn,
                """
                INSERT INTO images (id, tenant_id, filename, content_type, size_bytes, sha256,
                                    width, height, original_key)
                VALUES (%(id)s, %(t)s, %(f)s, %(c)s, %(n)s, %(sha)s, %(w)s, %(h)s, %(k)s)
                ON CONFLICT (id) DO NOTHING
                """,
                {
                    "id": image_id,
                    "t": tenant.id,
                    "f": filename,
                    "c": info.content_type,
                    "n": len(blob),
                    "sha": hashlib.sha256(blob).hexdigest(),
                    "w": info.width,
                    "h": info.height,
                    "k": key,
                },
                table="images",
            )
        uploaded = ImageUploaded(
            image_id=image_id,
            tenant_id=tenant.id,
            bucket=tenant.minio_bucket_name,
            key=key,
            filename=filename,
            content_type=info.content_type,
            size_bytes=len(blob),
            sha256=hashlib.sha256(blob).hexdigest(),
        )
        return self.process(uploaded, cause)

    # --- extract -------------------------------------------------------------------------
    @metrics.stage("extract")
    def extract(self, p: ImageValidated, cause: Event) -> Event | None:
        """Embed into the tenant's active space (the reply); while the tenant keeps another
        space (a migration target, or the previous space until cleanup), also embed with
        that model and publish its features.extracted (dual-write)."""
        loaded = self._load(p.image_id, p.tenant_id)
        if loaded is None:
            return None
        row, tenant = loaded
        if row.status in ("failed", "uploaded", "indexed"):
            return None
        active, *others = self.models.write_targets(row.tenant_id)
        with span(
            "image.extract", tenant_id=row.tenant_id, image_id=row.id, model=active.spec.name
        ):
            data = self.storage.get(tenant.minio_bucket_name, row.original_key)
            try:
                vector = self._embedder_for(active.spec).embed(data)
            except DeepLensError as exc:
                if isinstance(exc, TransientError):
                    raise
                return self._fail(row, "extract", exc, cause)
            copies = []
            for other in others:
                try:
                    copies.append((other, self._embedder_for(other.spec).embed(data)))
                except DeepLensError as exc:
                    if isinstance(exc, TransientError):
                        raise
                    # The other space then lacks this image, and cutover says so.
                    log.warning("no %s vector for %s: %s", other.spec.ref, row.id, exc.code)
            with self.db.one() as conn:
                execute(
                    conn,
                    "UPDATE images SET status = 'extracted', model = %(m)s,"
                    " vector_space = %(s)s, extracted_at = now(), updated_at = now()"
                    " WHERE id = %(id)s AND status = 'validated'",
                    {"m": active.spec.name, "s": active.space, "id": row.id},
                    table="images",
                )
            for other, vec in copies:
                copy = self._features(row, other.spec, other.space, vec, cause, primary=False)
                # Another id than the reply's (same type, image and cause otherwise).
                copy.id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{copy.id}/{other.space}"))
                self._publisher().publish(copy)
        return self._features(row, active.spec, active.space, vector, cause, primary=True)

    def _features(
        self,
        row: ImageRow,
        spec: ModelSpec,
        space: str,
        vector: list[float],
        cause: Event,
        *,
        primary: bool,
        backfill_id: uuid.UUID | None = None,
    ) -> Event:
        event = make_event(
            types.FEATURES_EXTRACTED,
            FeaturesExtracted(
                image_id=row.id,
                tenant_id=row.tenant_id,
                model=spec.name,
                dim=len(vector),
                space=space,
                vector_b64=FeaturesExtracted.pack(vector),
                ref=spec.ref,
                primary=primary,
                backfill_id=backfill_id,
            ),
            source="/deeplens/extract",
            causation=cause,
        )
        if "priority" in cause.extensions:
            event.extensions["priority"] = cause.extensions["priority"]
        return event

    def reembed(self, p: ImageReembed, cause: Event) -> Event | None:
        """Backfill or reindex: embed a stored original into ``p.space`` once. Skipped when
        the space already holds the image (a redelivery, a crash replay) or is no longer one
        of the tenant's spaces (cleaned up)."""
        loaded = self._load(p.image_id, p.tenant_id)
        if loaded is None:
            return None
        row, tenant = loaded
        if row.status not in ("extracted", "indexed"):
            return None  # still in the pipeline: its extraction writes every current space
        if p.space not in self.models.state(row.tenant_id).spaces:
            return None
        if self.models.holds(row.id, p.space):
            return None
        spec = self.models.spec(p.model)
        with span("image.reembed", tenant_id=row.tenant_id, image_id=row.id, model=spec.name):
            data = self.storage.get(tenant.minio_bucket_name, row.original_key)
            try:
                vector = self._embedder_for(spec).embed(data)
            except DeepLensError as exc:
                if isinstance(exc, TransientError):
                    raise
                if p.backfill_id is not None:
                    self.models.item_failed(p.backfill_id, row.id, f"{exc.code}: {exc.message}")
                return None
        return self._features(
            row, spec, p.space, vector, cause, primary=False, backfill_id=p.backfill_id
        )

    # --- index-vector --------------------------------------------------------------------
    @metrics.stage("index-vector")
    def index(self, p: FeaturesExtracted, cause: Event) -> Event | None:
        if not p.primary:
            return self._index_copy(p)
        loaded = self._load(p.image_id, p.tenant_id)
        if loaded is None:
            return None
        row, tenant = loaded
        if row.status not in ("extracted", "indexed"):
            return None
        # The event's claims are checked against the database, not trusted: the vector goes
        # only into this tenant's own space, from the model that extracted this image.
        if p.space != tenant.qdrant_collection_name or (row.model and p.model != row.model):
            log.warning(
                "ignoring features.extracted for %s: space %s / model %s do not match",
                row.id,
                p.space,
                p.model,
            )
            return None
        vectors = self._vectors()
        vector = p.vector
        with span("image.index", tenant_id=row.tenant_id, image_id=row.id):
            vectors.ensure_space(p.space, p.dim)
            # Upsert by image id: indexing the same image twice leaves one point.
            vectors.upsert(
                p.space,
                tenant_id=row.tenant_id,
                point_id=row.id,
                vector=vector,
                payload={
                    "filename": row.filename,
                    "uploadedAt": row.uploaded_at.isoformat(),
                    "model": p.model,
                },
            )
            self.models.record(row.id, row.tenant_id, p.space, p.ref or p.model)
            with self.db.one() as conn:
                newly = execute(
                    conn,
                    "UPDATE images SET status = 'indexed', indexed_at = now(),"
                    " updated_at = now() WHERE id = %(id)s AND status = 'extracted'",
                    {"id": row.id},
                    table="images",
                )
            if newly:
                metrics.indexed_after((datetime.now(UTC) - row.uploaded_at).total_seconds())
            self._group_duplicates(row, p, vector)
        return make_event(
            types.IMAGE_INDEXED,
            ImageIndexed(image_id=row.id, tenant_id=row.tenant_id, space=p.space, model=p.model),
            source="/deeplens/index-vector",
            causation=cause,
        )

    def _index_copy(self, p: FeaturesExtracted) -> Event | None:
        """A vector for another of the tenant's spaces: upsert, record, no status change;
        a backfill's copy then tops up the next batch."""
        loaded = self._load(p.image_id, p.tenant_id)
        if loaded is not None and p.space in self.models.state(p.tenant_id).spaces:
            row = loaded[0]
            vectors = self._vectors()
            with span("image.index_copy", tenant_id=row.tenant_id, image_id=row.id):
                vectors.ensure_space(p.space, p.dim)
                vectors.upsert(
                    p.space,
                    tenant_id=row.tenant_id,
                    point_id=row.id,
                    vector=p.vector,
                    payload={
                        "filename": row.filename,
                        "uploadedAt": row.uploaded_at.isoformat(),
                        "model": p.model,
                    },
                )
                if not self.models.record(row.id, row.tenant_id, p.space, p.ref or p.model):
                    vectors.delete(p.space, tenant_id=row.tenant_id, point_ids=[row.id])
        if p.backfill_id is not None:
            self.models.item_done(p.backfill_id, p.image_id)
            self._migrations().top_up()
        return None

    def _group_duplicates(self, row: ImageRow, p: FeaturesExtracted, vector: list[float]) -> None:
        """Join the near-duplicate group of the closest earlier image, if one is close enough.

        A group's root is its earliest upload, so grouping is the same whatever order the
        images are indexed in; the tenant row lock serialises concurrent indexing.
        """
        spec = self.models.spec(p.ref) if p.ref else spec_for(self.settings.features)
        hits = self._vectors().search(
            p.space,
            tenant_id=row.tenant_id,
            vector=vector,
            limit=6,
            threshold=spec.raw_for(self.settings.near_duplicate_threshold),
        )
        others = [h for h in hits if h.id != row.id]
        if not others:
            return
        similarity = spec.calibrate(others[0].score)
        with self.db.tx() as conn:
            fetch_one(
                conn,
                "SELECT * FROM tenants WHERE id = %(t)s FOR UPDATE",
                {"t": row.tenant_id},
                table="tenants",
                row=TenantRow,
            )
            neighbour = fetch_one(
                conn,
                IMAGE,
                {"id": others[0].id, "tenant_id": row.tenant_id},
                table="images",
                row=ImageRow,
            )
            me = fetch_one(
                conn,
                IMAGE,
                {"id": row.id, "tenant_id": row.tenant_id},
                table="images",
                row=ImageRow,
            )
            if neighbour is None or me is None or me.duplicate_of is not None:
                return
            root_id = neighbour.duplicate_of or neighbour.id
            root = (
                fetch_one(
                    conn,
                    IMAGE,
                    {"id": root_id, "tenant_id": row.tenant_id},
                    table="images",
                    row=ImageRow,
                )
                or neighbour
            )
            params = {"t": row.tenant_id, "me": row.id, "root": root.id, "s": similarity}
            if (me.uploaded_at, str(me.id)) < (root.uploaded_at, str(root.id)):
                execute(
                    conn,
                    "UPDATE images SET duplicate_of = %(me)s WHERE tenant_id = %(t)s"
                    " AND (id = %(root)s OR duplicate_of = %(root)s)",
                    params,
                    table="images",
                )
                execute(
                    conn,
                    "UPDATE images SET near_similarity = %(s)s WHERE id = %(root)s",
                    params,
                    table="images",
                )
            else:
                execute(
                    conn,
                    "UPDATE images SET duplicate_of = %(root)s, near_similarity ="
                    " %(s)s WHERE id = %(me)s AND tenant_id = %(t)s",
                    params,
                    table="images",
                )

    # --- sweeper -------------------------------------------------------------------------
    def stuck(self, older_than_seconds: float, limit: int = 500) -> list[ImageRow]:
        """Images that stopped mid-pipeline with no delivery pending for them."""
        with self.db.tx() as conn:
            return fetch_all(
                conn,
                """
                SELECT i.* FROM images i
                WHERE i.deleted_at IS NULL AND i.status IN ('uploaded', 'validated', 'extracted')
                  AND i.updated_at < now() - make_interval(secs => %(s)s)
                  AND NOT EXISTS (
                    SELECT 1 FROM broker_deliveries d
                    WHERE d.status = 'pending'
                      AND d.event->>'subject' = 'tenants/' || i.tenant_id || '/images/' || i.id)
                ORDER BY i.updated_at LIMIT %(l)s
                """,
                {"s": older_than_seconds, "l": limit},
                table="images",
                row=ImageRow,
            )

    def deleted(self, limit: int = 200) -> list[ImageRow]:
        with self.db.tx() as conn:
            return fetch_all(
                conn,
                "SELECT * FROM images WHERE deleted_at IS NOT NULL ORDER BY deleted_at LIMIT %(l)s",
                {"l": limit},
                table="images",
                row=ImageRow,
            )

    def restart_event(self, row: ImageRow) -> Event | None:
        """The event that restarts a stuck image at its stage (extracted restarts at
        extraction: the vector travelled only in the lost event)."""
        loaded = self._load(row.id, row.tenant_id)
        if loaded is None:
            return None
        row, tenant = loaded
        source = "/deeplens/sweeper"
        if row.status == "uploaded":
            return make_event(
                types.IMAGE_UPLOADED,
                ImageUploaded(
                    image_id=row.id,
                    tenant_id=row.tenant_id,
                    bucket=tenant.minio_bucket_name,
                    key=row.original_key,
                    filename=row.filename,
                    content_type=row.content_type,
                    size_bytes=row.size_bytes,
                    sha256=row.sha256,
                ),
                source=source,
            )
        if row.status in ("validated", "extracted"):
            if row.status == "extracted":
                with self.db.tx() as conn:
                    execute(
                        conn,
                        "UPDATE images SET status = 'validated', updated_at = now()"
                        " WHERE id = %(id)s AND status = 'extracted'",
                        {"id": row.id},
                        table="images",
                    )
            return make_event(
                types.IMAGE_VALIDATED,
                ImageValidated(
                    image_id=row.id,
                    tenant_id=row.tenant_id,
                    bucket=tenant.minio_bucket_name,
                    key=row.original_key,
                    width=row.width or 0,
                    height=row.height or 0,
                    thumbnails={"256": thumb_key(row.id, 256), "128": thumb_key(row.id, 128)},
                ),
                source=source,
            )
        return None
