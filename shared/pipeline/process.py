"""process-image: decode the original safely, store its 256/128 WebP thumbnails, its perceptual
hash and (for geometric verification) its local features; uploaded → validated."""

from __future__ import annotations

from PIL import Image

from events.codec import Event
from events.payloads import ImageUploaded
from shared import local_features, metrics, verification
from shared.errors import DeepLensError, TransientError
from shared.imaging import open_image_sized, perceptual_hash, thumbnails
from shared.pipeline import replies
from shared.pipeline.stage import ORDER, Stage
from shared.storage import thumb_key
from shared.store.images import ImageRow, stages
from shared.telemetry import span

SOURCE = "/deeplens/process-image"


# What this stage derives needs at most this many pixels on the longer side (local features
# are extracted at 512; thumbnails are 256 and 128; the perceptual hash, 32).
WORK_SIDE = 512


def _working_copy(img: Image.Image) -> Image.Image:
    """The decoded image box-reduced by the largest integer factor that keeps its longer side
    at least WORK_SIDE: a 1280x800 photo (which the JPEG draft decode cannot reduce, being under
    2x512 on its shorter side) becomes 640x400, and thumbnails, hash and local features cost
    about a third less per image (measured: 27 → 18 ms)."""
    factor = max(img.size) // WORK_SIDE
    return img.reduce(factor) if factor >= 2 else img


class Process(Stage):
    @metrics.stage("process-image")
    def on_uploaded(self, p: ImageUploaded, cause: Event) -> Event | None:
        """image.uploaded → image.validated (or image.failed for an image that cannot be
        decoded). An image validated already gets its reply again (it may have been lost)."""
        loaded = self.load(tenant_id=p.tenant_id, image_id=p.image_id)
        if loaded is None:
            return None
        row, tenant = loaded
        if row.status == "failed" or ORDER.get(row.status, 0) > ORDER["validated"]:
            return None
        bucket = tenant.minio_bucket_name
        with span("image.process", tenant_id=row.tenant_id, image_id=row.id):
            if row.status == "uploaded":
                try:
                    data = self.storage.get(bucket, row.original_key)
                    # Thumbnails are at most 256 px: decode JPEGs at a reduced scale.
                    img, (width, height) = open_image_sized(
                        data, draft=(WORK_SIDE, 0), max_pixels=self.settings.max_image_pixels
                    )
                except TransientError:
                    raise
                except DeepLensError as exc:
                    return self.fail(row, "process-image", exc, cause)
                self._validated(row, bucket, _working_copy(img), width, height)
            else:
                width, height = row.width or 0, row.height or 0
        return replies.validated(
            row, bucket, width=width, height=height, source=SOURCE, cause=cause
        )

    def _validated(
        self, row: ImageRow, bucket: str, img: Image.Image, width: int, height: int
    ) -> None:
        thumbs = thumbnails(img)
        phash = perceptual_hash(img)
        # Local features for geometric verification, from the image already decoded.
        local = local_features.extract_index(img) if self.settings.local_features else None
        for size, blob in thumbs.items():
            self.storage.put(bucket, thumb_key(row.id, size), blob, "image/webp")
        with self.db.tenant_tx(row.tenant_id) as conn:
            if local is not None:
                verification.save(conn, row.id, row.tenant_id, local)
            stages.mark_validated(
                conn,
                tenant_id=row.tenant_id,
                image_id=row.id,
                width=width,
                height=height,
                thumb_256_key=thumb_key(row.id, 256),
                thumb_128_key=thumb_key(row.id, 128),
                thumbnails_bytes=sum(len(b) for b in thumbs.values()),
                phash=phash,
            )
