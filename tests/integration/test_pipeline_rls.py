"""The pipeline runs behind row-level security: every statement it makes on one tenant's image
runs in that tenant's transaction (role deeplens_tenant, deeplens.tenant_id set), so even a
statement that named the wrong image could not touch another tenant's row."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from events.codec import Event, encode_binary, from_json
from shared.store.images import stages
from tests.conftest import Platform
from tests.integration.test_pipeline import deliver, queued, upload
from tests.photos import encode, photo

pytestmark = pytest.mark.integration

# Records who changed which images row: the role and tenant setting the statement ran under,
# and the tenant of the row it changed. A trigger runs as the statement's own role.
AUDIT = """
CREATE TABLE image_writes (op text, role text, tenant text, row_tenant uuid);
GRANT INSERT ON image_writes TO deeplens_tenant;
CREATE FUNCTION audit_image_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO image_writes VALUES (TG_OP, current_user,
        current_setting('deeplens.tenant_id', true), coalesce(NEW.tenant_id, OLD.tenant_id));
    RETURN coalesce(NEW, OLD);
END $$;
CREATE TRIGGER audit_image_write BEFORE INSERT OR UPDATE OR DELETE ON images
    FOR EACH ROW EXECUTE FUNCTION audit_image_write();
"""


@pytest.fixture
def audited(platform: Platform) -> Iterator[Platform]:
    assert platform.container.db.rls, "the deeplens_tenant role should exist on the test server"
    with platform.container.db.tx() as conn:
        conn.execute(AUDIT)
    yield platform


def writes(p: Platform) -> list[tuple[Any, ...]]:
    with p.container.db.tx() as conn:
        return [tuple(r) for r in conn.execute("SELECT * FROM image_writes").fetchall()]


def run_pipeline(p: Platform, event: Event) -> None:
    for path in ("/events/process-image", "/events/extract", "/events/index-vector"):
        code, reply = deliver(p, path, event, "binary")
        assert code == 200 and reply is not None, path
        event = reply


def test_a_stage_transition_in_one_tenant_cannot_touch_another_tenants_image(
    audited: Platform,
) -> None:
    p = audited
    a, b = p.signup("A"), p.signup("B")
    upload(p, a, "a.jpg", encode(photo("coffee.png")))
    b_image = uuid.UUID(upload(p, b, "b.jpg", encode(photo("rocket.jpg"))).json()["imageId"])
    ta, tb = uuid.UUID(a["tenant"]["id"]), uuid.UUID(b["tenant"]["id"])
    db = p.container.db

    # Tenant A's transaction, tenant B's ids: the wall hides B's row from every statement.
    with db.tenant_tx(ta) as conn:
        assert stages.with_tenant(conn, tenant_id=tb, image_id=b_image) is None
        changed = stages.mark_failed(
            conn, tenant_id=tb, image_id=b_image, code="corrupt_image", reason="not yours"
        )
        assert changed == 0
        assert stages.back_to_validated(conn, tenant_id=tb, image_id=b_image) == 0
    with db.tx() as conn:
        row = conn.execute(
            "SELECT status, failure_code FROM images WHERE id = %s", (b_image,)
        ).fetchone()
    assert row == ("uploaded", None)
    # The same statement in B's own transaction does change it (the test above is not vacuous).
    with db.tenant_tx(tb) as conn:
        assert stages.mark_failed(conn, tenant_id=tb, image_id=b_image, code="x", reason="x") == 1


def test_every_pipeline_write_runs_in_the_images_tenant_transaction(audited: Platform) -> None:
    p = audited
    a, b = p.signup("A"), p.signup("B")
    # Two near-duplicates in A (grouping writes both rows), one image in B.
    upload(p, a, "a1.jpg", encode(photo("coffee.png")))
    upload(p, a, "a2.jpg", encode(photo("coffee.png"), quality=70))
    upload(p, b, "b1.jpg", encode(photo("rocket.jpg")))
    for delivery in queued(p):
        run_pipeline(p, from_json(delivery["event"]))
    # The sweeper restarts a stuck image (extracted → validated) and purges one whose
    # deletion a crash interrupted; the API deletes another.
    stuck = upload(p, b, "b2.jpg", encode(photo("chelsea.png"))).json()["imageId"]
    gone = upload(p, b, "b3.jpg", encode(photo("astronaut.png"))).json()["imageId"]
    deleted = upload(p, a, "a3.jpg", encode(photo("rocket.jpg"))).json()["imageId"]
    [pending] = [d for d in queued(p) if d["event"]["data"]["imageId"] == stuck]
    code, validated = deliver(p, "/events/process-image", from_json(pending["event"]), "binary")
    assert code == 200 and validated is not None
    assert deliver(p, "/events/extract", validated, "binary")[0] == 200  # its reply is lost
    before = writes(p)
    with p.container.db.tx() as conn:  # the crash, written by the test as the platform
        conn.execute("DELETE FROM broker_deliveries")
        conn.execute(
            "UPDATE images SET updated_at = now() - interval '1 hour' WHERE id = %s", (stuck,)
        )
        conn.execute("UPDATE images SET deleted_at = now() WHERE id = %s", (gone,))
        conn.execute("DELETE FROM image_writes")  # the test's own writes above
    assert p.client.delete(f"/api/images/{deleted}", headers=a["headers"]).status_code == 204
    tick = Event(type="dev.knative.sources.ping", source="/ping", data={})
    headers, body = encode_binary(tick)
    r = p.client.post("/events/sweeper", headers={**headers, **p.event_headers}, content=body)
    assert r.status_code == 202 and r.json()["restarted"] == 1 and r.json()["purged"] == 1

    seen = before + writes(p)
    ops = {op for op, *_ in seen}
    assert {"INSERT", "UPDATE", "DELETE"} <= ops
    outside = [w for w in seen if w[1] != "deeplens_tenant" or w[2] != str(w[3])]
    assert outside == [], f"images written outside the row's tenant transaction: {outside}"
    with p.container.db.tx() as conn:
        statuses: dict[str, Any] = dict(
            conn.execute("SELECT filename, status FROM images").fetchall()
        )
    assert statuses == {
        "a1.jpg": "indexed",
        "a2.jpg": "indexed",
        "b1.jpg": "indexed",
        "b2.jpg": "validated",
    }
    with p.container.db.tx() as conn:
        grouped = conn.execute("SELECT count(*) FROM images WHERE duplicate_of IS NOT NULL")
        assert grouped.fetchone()[0] == 1  # the near-duplicate joined its group
