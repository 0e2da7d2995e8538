"""Every event the pipeline emits about an image, built in one place.

A reply caused by an event gets a deterministic id (events/codec.make_event), so a stage that
runs twice for the same input replies with the same event and the broker drops the copy, and
inherits its cause's ``priority`` extension (events/publisher.PRIORITY): a bulk upload stays
bulk, a backfill stays low, through every stage.
"""

from __future__ import annotations

import uuid

from events import types
from events.codec import Event, make_event
from events.payloads import (
    FeaturesExtracted,
    ImageDeleted,
    ImageFailed,
    ImageIndexed,
    ImageUploaded,
    ImageValidated,
)
from shared.errors import DeepLensError
from shared.features.registry import ModelSpec
from shared.storage import thumb_key
from shared.store.images import ImageRow


def uploaded_payload(row: ImageRow, bucket: str) -> ImageUploaded:
    return ImageUploaded(
        image_id=row.id,
        tenant_id=row.tenant_id,
        bucket=bucket,
        key=row.original_key,
        filename=row.filename,
        content_type=row.content_type,
        size_bytes=row.size_bytes,
        sha256=row.sha256,
    )


def _inherit(event: Event, cause: Event | None) -> Event:
    """A reply is served at its cause's priority."""
    if cause is not None and "priority" in cause.extensions:
        event.extensions["priority"] = cause.extensions["priority"]
    return event


def _with_priority(event: Event, priority: str | None) -> Event:
    if priority is not None:
        event.extensions["priority"] = priority
    return event


def uploaded(row: ImageRow, bucket: str, *, source: str, priority: str | None = None) -> Event:
    """image.uploaded: starts (or, from the sweeper, restarts) an image's pipeline;
    ``priority``: the extension it carries (None: live)."""
    event = make_event(types.IMAGE_UPLOADED, uploaded_payload(row, bucket), source=source)
    return _with_priority(event, priority)


def validated(
    row: ImageRow,
    bucket: str,
    *,
    width: int,
    height: int,
    source: str,
    cause: Event | None = None,
    priority: str | None = None,
) -> Event:
    """image.validated: the original decodes and its thumbnails are stored (at the cause's
    priority; the sweeper, restarting with no cause, passes ``priority``)."""
    event = make_event(
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
        source=source,
        causation=cause,
    )
    return _with_priority(_inherit(event, cause), priority)


def failed(row: ImageRow, stage: str, exc: DeepLensError, cause: Event) -> Event:
    """image.failed: a permanent failure at ``stage`` (the image is marked failed)."""
    event = make_event(
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
    return _inherit(event, cause)


def features(
    row: ImageRow,
    spec: ModelSpec,
    space: str,
    vector: list[float],
    cause: Event,
    *,
    primary: bool,
    backfill_id: uuid.UUID | None = None,
    regions: list[list[float]] | None = None,
) -> Event:
    """features.extracted: the vector (and region vectors) of ``row`` by ``spec`` for
    ``space``. The primary one moves the image on; the others (dual-write, backfill) only add
    it to another space. A backfill's priority travels on."""
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
            regions_b64=FeaturesExtracted.pack_regions(regions or []),
        ),
        source="/deeplens/extract",
        causation=cause,
    )
    return _inherit(event, cause)


def copy_of(event: Event, space: str) -> Event:
    """A dual-write's features.extracted for another space: another id than the reply's (same
    type, image and cause otherwise)."""
    event.id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{event.id}/{space}"))
    return event


def indexed(row: ImageRow, *, space: str, model: str, cause: Event) -> Event:
    """image.indexed: the image is searchable."""
    event = make_event(
        types.IMAGE_INDEXED,
        ImageIndexed(image_id=row.id, tenant_id=row.tenant_id, space=space, model=model),
        source="/deeplens/index-vector",
        causation=cause,
    )
    return _inherit(event, cause)


def deleted(row: ImageRow, *, source: str) -> Event:
    """image.deleted: the image is gone from every read."""
    return make_event(
        types.IMAGE_DELETED,
        ImageDeleted(image_id=row.id, tenant_id=row.tenant_id, space=row.vector_space),
        source=source,
    )
