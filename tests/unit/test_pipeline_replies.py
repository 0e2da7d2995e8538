"""The pipeline's events, built in one place (shared/pipeline/replies.py): deterministic ids
for replies (a stage that runs twice replies with the same event), the subject and tenant
extensions every consumer relies on, and what travels from the causing event."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from events import types
from events.codec import Event
from events.payloads import FeaturesExtracted
from shared.errors import InvalidInput
from shared.features.registry import MODELS
from shared.pipeline import replies
from shared.store.images import ImageRow


def row() -> ImageRow:
    now = datetime.now(UTC)
    image_id = uuid.uuid4()
    return ImageRow(
        id=image_id,
        tenant_id=uuid.uuid4(),
        filename="a.jpg",
        content_type="image/jpeg",
        size_bytes=10,
        sha256="0" * 64,
        width=4,
        height=3,
        status="uploaded",
        failure_code=None,
        failure_reason=None,
        original_key=f"images/{image_id}/original",
        thumb_256_key=None,
        thumb_128_key=None,
        thumbnails_bytes=0,
        model=None,
        vector_space=None,
        uploaded_by=None,
        uploaded_at=now,
        validated_at=None,
        extracted_at=None,
        indexed_at=None,
        updated_at=now,
        deleted_at=None,
    )


def cause(**extensions: str) -> Event:
    return Event(type=types.IMAGE_UPLOADED, source="/test", data={}, extensions=extensions)


def test_a_reply_has_the_same_id_for_the_same_cause() -> None:
    r, c = row(), cause()
    first = replies.validated(r, "bucket", width=4, height=3, source="/x", cause=c)
    again = replies.validated(r, "bucket", width=4, height=3, source="/x", cause=c)
    other = replies.validated(r, "bucket", width=4, height=3, source="/x", cause=cause())
    assert first.id == again.id != other.id
    assert first.subject == f"tenants/{r.tenant_id}/images/{r.id}"
    assert first.extensions["tenantid"] == str(r.tenant_id)
    assert first.extensions["partitionkey"] == str(r.id)
    assert first.data["thumbnails"] == {
        "256": f"images/{r.id}/thumb-256.webp",
        "128": f"images/{r.id}/thumb-128.webp",
    }


def test_features_carry_the_backfill_priority_and_copies_get_their_own_id() -> None:
    r, spec = row(), next(iter(MODELS.values()))
    vector = [0.5] * spec.dim
    c = cause(priority="1")
    event = replies.features(r, spec, "space_a", vector, c, primary=True)
    assert event.type == types.FEATURES_EXTRACTED and event.extensions["priority"] == "1"
    p = FeaturesExtracted.model_validate(event.data)
    assert p.primary and p.space == "space_a" and p.dim == spec.dim and p.ref == spec.ref
    assert p.vector == vector
    reply_id = event.id
    copy = replies.copy_of(replies.features(r, spec, "space_b", vector, c, primary=False), "b")
    assert copy.id not in (reply_id, replies.features(r, spec, "b", vector, c, primary=False).id)
    assert (
        "priority" not in replies.features(r, spec, "s", vector, cause(), primary=True).extensions
    )


def test_failed_names_the_stage_and_the_error() -> None:
    r = row()
    event = replies.failed(r, "extract", InvalidInput("broken", code="corrupt_image"), cause())
    assert event.type == types.IMAGE_FAILED and event.source == "/deeplens/extract"
    assert event.data["stage"] == "extract" and event.data["code"] == "corrupt_image"
    assert event.data["reason"] == "broken"


def test_uploaded_and_deleted_start_new_chains() -> None:
    r = row()
    one, two = (replies.uploaded(r, "bucket", source="/deeplens/sweeper") for _ in range(2))
    assert one.id != two.id and one.data["key"] == r.original_key and one.data["bucket"] == "bucket"
    gone = replies.deleted(r, source="/deeplens/images")
    assert gone.type == types.IMAGE_DELETED and gone.data["space"] is None


def test_every_reply_keeps_its_cause_priority_and_the_sweeper_sets_it() -> None:
    r, spec = row(), next(iter(MODELS.values()))
    bulk = cause(priority="bulk")
    for event in (
        replies.validated(r, "b", width=4, height=3, source="/x", cause=bulk),
        replies.features(r, spec, "s", [0.5] * spec.dim, bulk, primary=True),
        replies.indexed(r, space="s", model=spec.name, cause=bulk),
        replies.failed(r, "extract", InvalidInput("broken", code="corrupt_image"), bulk),
    ):
        assert event.extensions["priority"] == "bulk", event.type
        assert event.extensions["tenantid"] == str(r.tenant_id)
    assert "priority" not in replies.uploaded(r, "b", source="/x").extensions
    assert replies.uploaded(r, "b", source="/x", priority="bulk").extensions["priority"] == "bulk"
    restarted = replies.validated(r, "b", width=4, height=3, source="/x", priority="bulk")
    assert restarted.extensions["priority"] == "bulk"
    assert "priority" not in replies.indexed(r, space="s", model="m", cause=cause()).extensions
