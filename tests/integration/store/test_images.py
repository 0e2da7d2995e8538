"""shared/store/images: the catalog, the pipeline's stage transitions (each conditional on the
stage it leaves, each scoped by tenant and id), the sweeper's queries and near-duplicate groups,
run the way the services run them (inside the tenant's transaction)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from shared.db import Database
from shared.store import images
from shared.store.images import ImageRow, groups, stages
from shared.store.tenants import TenantRow
from tests.integration.store.conftest import add_tenant

pytestmark = pytest.mark.integration


def add_image(db: Database, tenant: TenantRow, sha: str = "a" * 64) -> ImageRow:
    image_id = uuid.uuid4()
    with db.tenant_tx(tenant.id) as conn:
        row = images.insert(
            conn,
            tenant_id=tenant.id,
            image_id=image_id,
            filename=f"{image_id.hex[:6]}.jpg",
            content_type="image/jpeg",
            size_bytes=100,
            sha256=sha,
            width=4,
            height=3,
            original_key=f"images/{image_id}/original",
        )
    assert row is not None
    return row


def status(db: Database, row: ImageRow) -> str | None:
    with db.tenant_tx(row.tenant_id) as conn:
        got = images.get(conn, tenant_id=row.tenant_id, image_id=row.id)
    return got.status if got else None


def test_catalog_reads_are_scoped_and_soft_delete_hides(db: Database) -> None:
    a, b = add_tenant(db, "A"), add_tenant(db, "B")
    first, second = add_image(db, a), add_image(db, a, sha="b" * 64)
    theirs = add_image(db, b)
    with db.tenant_tx(a.id) as conn:
        assert images.get(conn, tenant_id=a.id, image_id=theirs.id) is None
        assert images.same_bytes(conn, tenant_id=a.id, sha256="a" * 64) == first
        page = images.page(conn, tenant_id=a.id, status=None, limit=10, offset=0)
        assert [r.id for r in page] == [second.id, first.id]  # newest first
        assert images.count(conn, tenant_id=a.id, status="uploaded") == 2
        assert images.count(conn, tenant_id=a.id, status="indexed") == 0
        # A replayed adoption: the id exists, nothing is inserted.
        again = images.insert(
            conn,
            tenant_id=a.id,
            image_id=first.id,
            filename="x",
            content_type="image/jpeg",
            size_bytes=1,
            sha256="c" * 64,
            width=None,
            height=None,
            original_key="k",
        )
        assert again is None
        images.soft_delete(conn, tenant_id=a.id, image_id=first.id)
        assert images.get(conn, tenant_id=a.id, image_id=first.id) is None
    with db.tx() as conn:  # platform-wide
        assert images.exists_anywhere(conn, image_id=theirs.id)
        assert [r.id for r in stages.deleted(conn, limit=10)] == [first.id]
    with db.tenant_tx(a.id) as conn:
        images.remove_deleted(conn, tenant_id=a.id, image_id=second.id)  # not deleted: kept
        images.remove_deleted(conn, tenant_id=a.id, image_id=first.id)
        images.forget(conn, tenant_id=a.id, image_id=second.id)
    with db.tx() as conn:
        assert not images.exists_anywhere(conn, image_id=first.id)
        assert not images.exists_anywhere(conn, image_id=second.id)


def test_stage_transitions_leave_only_their_own_stage(db: Database) -> None:
    t = add_tenant(db)
    row = add_image(db, t)
    with db.tenant_tx(t.id) as conn:
        assert (
            stages.mark_extracted(conn, tenant_id=t.id, image_id=row.id, model="m", space="s") == 0
        )  # not validated
        validated: dict[str, Any] = {
            "width": 4,
            "height": 3,
            "thumb_256_key": "t256",
            "thumb_128_key": "t128",
            "thumbnails_bytes": 10,
            "phash": 7,
        }
        assert stages.mark_validated(conn, tenant_id=t.id, image_id=row.id, **validated) == 1
        assert (
            stages.mark_validated(conn, tenant_id=t.id, image_id=row.id, **validated) == 0
        )  # redelivered
        loaded = stages.with_tenant(conn, tenant_id=t.id, image_id=row.id)
        assert loaded is not None
        image, tenant = loaded
        assert image.status == "validated" and image.phash == 7 and tenant == t
        assert (
            stages.mark_extracted(conn, tenant_id=t.id, image_id=row.id, model="m", space="s") == 1
        )
        assert (
            stages.back_to_validated(conn, tenant_id=t.id, image_id=row.id) == 1
        )  # the sweeper's restart
        assert (
            stages.mark_extracted(conn, tenant_id=t.id, image_id=row.id, model="m", space="s") == 1
        )
        assert stages.mark_indexed(conn, tenant_id=t.id, image_id=row.id) == 1
        assert stages.mark_indexed(conn, tenant_id=t.id, image_id=row.id) == 0
    assert status(db, row) == "indexed"
    with db.tenant_tx(t.id) as conn:
        stages.mark_failed(
            conn, tenant_id=t.id, image_id=row.id, code="corrupt_image", reason="broken"
        )
        assert stages.with_tenant(conn, tenant_id=uuid.uuid4(), image_id=row.id) is None
    assert status(db, row) == "failed"


def test_stuck_lists_images_with_no_pending_delivery(db: Database) -> None:
    t = add_tenant(db)
    row = add_image(db, t)
    with db.tx() as conn:
        assert stages.stuck(conn, older_than_seconds=600, limit=10) == []  # not old enough yet
        conn.execute("UPDATE images SET updated_at = now() - interval '1 hour'")
        assert [r.id for r in stages.stuck(conn, older_than_seconds=60, limit=10)] == [row.id]


def test_groups_take_the_earliest_as_root_and_reroot_on_delete(db: Database) -> None:
    t = add_tenant(db)
    first, second, third = (add_image(db, t, sha=c * 64) for c in "abc")
    with db.tenant_tx(t.id) as conn:
        groups.join(conn, tenant_id=t.id, image_id=third.id, root_id=second.id, similarity=0.9)
        # An earlier image takes the group over; the old root records its similarity.
        groups.become_root(
            conn, tenant_id=t.id, image_id=first.id, root_id=second.id, similarity=0.95
        )
        [root] = groups.roots(conn, tenant_id=t.id, limit=10, offset=0)
        assert (root.root, root.n) == (first.id, 3) and groups.count(conn, tenant_id=t.id) == 1
        members = groups.members(conn, tenant_id=t.id, roots=[first.id])
        assert [(m.id, m.duplicate_of) for m in members] == [
            (first.id, None),
            (second.id, first.id),
            (third.id, first.id),
        ]
        assert members[1].near_similarity == 0.95
        picked = groups.by_ids(conn, tenant_id=t.id, ids=[third.id, uuid.uuid4()])
        assert [m.id for m in picked] == [third.id]
        images.soft_delete(conn, tenant_id=t.id, image_id=first.id)
        groups.reroot(conn, tenant_id=t.id, image_id=first.id)
        [root] = groups.roots(conn, tenant_id=t.id, limit=10, offset=0)
        assert (root.root, root.n) == (second.id, 2)
