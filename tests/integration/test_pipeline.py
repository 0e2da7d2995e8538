"""The image pipeline on the real PostgreSQL: every CloudEvent handler in binary and structured
mode, idempotence, refused uploads, failures, the broker, the sweeper, deletion."""

from __future__ import annotations

import io
import uuid
from typing import Any

import pytest
from PIL import Image

from events.broker import LocalBroker
from events.codec import Event, decode, encode_binary, encode_structured, from_json
from tests.conftest import Platform, wait_for
from tests.photos import encode, photo

pytestmark = pytest.mark.integration


def upload(p: Platform, t: dict[str, Any], name: str, data: bytes) -> Any:
    return p.client.post("/api/images/upload", headers=t["headers"], files={"file": (name, data)})


def queued(p: Platform) -> list[dict[str, Any]]:
    with p.container.db.tx() as conn:
        rows = conn.execute(
            "SELECT event, subscriber FROM broker_deliveries WHERE status = 'pending' ORDER BY id"
        ).fetchall()
    return [{"event": r[0], "subscriber": r[1]} for r in rows]


def deliver(p: Platform, path: str, event: Event, mode: str) -> tuple[int, Event | None]:
    headers, body = encode_binary(event) if mode == "binary" else encode_structured(event)
    r = p.client.post(path, headers={**headers, **p.event_headers}, content=body)
    reply = decode(dict(r.headers), r.content) if "ce-type" in r.headers else None
    return r.status_code, reply


def state(p: Platform, image_id: str) -> tuple[str, int]:
    c = p.container
    with c.db.tx() as conn:
        row = conn.execute(
            "SELECT i.status, t.qdrant_collection_name, i.tenant_id FROM images i"
            " JOIN tenants t ON t.id = i.tenant_id WHERE i.id = %s",
            (image_id,),
        ).fetchone()
    assert row is not None
    try:
        n = c.vectors.count(row[1], tenant_id=row[2])
    except Exception:  # noqa: BLE001 - no space yet
        n = 0
    return row[0], n


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_each_handler_in_both_modes_and_twice(platform: Platform, mode: str) -> None:
    p = platform
    t = p.signup()
    r = upload(p, t, "astronaut.jpg", encode(photo("astronaut.png")))
    assert r.status_code == 202 and r.json()["status"] == "uploaded"
    image_id = r.json()["imageId"]
    [delivery] = queued(p)
    assert delivery["subscriber"] == "/events/process-image"
    uploaded = from_json(delivery["event"])

    steps = [
        ("/events/process-image", "io.deeplens.image.validated.v1", "validated"),
        ("/events/extract", "io.deeplens.features.extracted.v1", "extracted"),
        ("/events/index-vector", "io.deeplens.image.indexed.v1", "indexed"),
    ]
    event = uploaded
    for path, reply_type, status in steps:
        code, reply = deliver(p, path, event, mode)
        assert code == 200 and reply is not None and reply.type == reply_type
        assert reply.subject == f"tenants/{t['tenant']['id']}/images/{image_id}"
        assert state(p, image_id)[0] == status
        # The same event again: same state, same reply id (the broker dedups on it).
        code2, reply2 = deliver(p, path, event, mode)
        assert code2 in (200, 202)
        if reply2 is not None:
            assert reply2.id == reply.id
        assert state(p, image_id)[0] == status
        event = reply
    assert state(p, image_id) == ("indexed", 1)
    # Redelivering the first event after the image is indexed changes nothing.
    code, again = deliver(p, "/events/process-image", uploaded, mode)
    assert code == 202 and again is None
    assert state(p, image_id) == ("indexed", 1)
    body = p.client.get(f"/api/images/{image_id}", headers=t["headers"]).json()
    assert body["indexedAt"] and body["width"] == 512 and body["model"] == "efficientnet-lite0"
    thumb = p.client.get(f"/api/images/{image_id}/thumbnail/128", headers=t["headers"])
    assert thumb.status_code == 200
    assert Image.open(io.BytesIO(thumb.content)).format == "WEBP"
    vec = p.client.get(f"/api/images/{image_id}/vector", headers=t["headers"]).json()
    assert vec["dimension"] == 1280


def _bomb() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (12000, 12000)).save(buf, "PNG", optimize=True)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("name", "data", "status", "code"),
    [
        (
            "corrupt.jpg",
            encode(photo("coffee.png"))[:300] + b"\x00garbage" * 500,
            422,
            "corrupt_image",
        ),
        ("truncated.jpg", encode(photo("coffee.png"))[:5000], 422, "corrupt_image"),
        ("empty.jpg", b"", 422, "empty_file"),
        ("notes.jpg", b"these are not pixels\n" * 20, 415, "unsupported_format"),
        ("coffee.png", encode(photo("coffee.png"), "JPEG"), 415, "extension_mismatch"),
        ("bomb.png", _bomb(), 413, "image_too_many_pixels"),
    ],
)
def test_refused_uploads_leave_nothing_behind(
    platform: Platform, name: str, data: bytes, status: int, code: str
) -> None:
    p = platform
    t = p.signup()
    r = upload(p, t, name, data)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    with p.container.db.tx() as conn:
        assert conn.execute("SELECT count(*) FROM images").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM broker_deliveries").fetchone()[0] == 0
    bucket = p.container.storage.root / t["tenant"]["minioBucketName"]
    assert [x for x in bucket.rglob("*") if x.is_file()] == []


def test_missing_file_field_is_a_clear_400(platform: Platform) -> None:
    t = platform.signup()
    r = platform.client.post("/api/images/upload", headers=t["headers"], data={"x": "1"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "file_required"


def test_image_that_fails_in_pipeline_is_marked_failed(platform: Platform) -> None:
    p = platform
    t = p.signup()
    image_id = upload(p, t, "a.jpg", encode(photo("chelsea.png"))).json()["imageId"]
    # The stored object rots between upload and processing.
    bucket = t["tenant"]["minioBucketName"]
    p.container.storage.put(bucket, f"images/{image_id}/original", b"\xff\xd8\xff broken", "x")
    event = from_json(queued(p)[0]["event"])
    code, reply = deliver(p, "/events/process-image", event, "binary")
    assert code == 200 and reply is not None and reply.type == "io.deeplens.image.failed.v1"
    got = p.client.get(f"/api/images/{image_id}", headers=t["headers"]).json()
    assert got["status"] == "failed" and got["failureCode"] == "corrupt_image"


def test_broker_runs_pipeline_and_dead_letters_poison_events(platform: Platform) -> None:
    p = platform
    settings = p.container.settings.model_copy(
        update={"broker_max_attempts": 2, "broker_backoff_seconds": 0.05}
    )
    broker = LocalBroker(p.container.db, p.fn.handle, settings, sweep_every=3600)
    broker.wakeup = p.container.publisher.wakeup
    broker.start()
    try:
        t = p.signup()
        image_id = upload(p, t, "rocket.jpg", encode(photo("rocket.jpg"))).json()["imageId"]
        wait_for(
            lambda: (
                p.client.get(f"/api/images/{image_id}", headers=t["headers"]).json()["status"]
                == "indexed"
            )
        )
        # A poison event (payload missing its fields) fails every attempt → dead letter.
        poison = Event(
            type="io.deeplens.image.uploaded.v1",
            source="/test",
            data={"imageId": str(uuid.uuid4())},
            extensions={"tenantid": t["tenant"]["id"]},
        )
        p.container.publisher.publish(poison)

        def stored() -> Any:
            with p.container.db.tx() as conn:
                return conn.execute(
                    "SELECT event_type, attempts, error FROM failed_events WHERE event_id = %s",
                    (poison.id,),
                ).fetchone()

        row = wait_for(stored)
        assert row[0] == "io.deeplens.image.uploaded.v1" and row[1] == 2
        assert row[2].startswith("400")
        with p.container.db.tx() as conn:
            st = conn.execute(
                "SELECT status FROM broker_deliveries WHERE event_id = %s", (poison.id,)
            ).fetchone()
        assert st[0] == "dead"
    finally:
        broker.stop()


def test_sweeper_restarts_images_whose_event_was_lost(platform: Platform) -> None:
    p = platform
    t = p.signup()
    image_id = upload(p, t, "a.jpg", encode(photo("coffee.png"))).json()["imageId"]
    with p.container.db.tx() as conn:  # the crash: row written, event never delivered
        conn.execute("DELETE FROM broker_deliveries")
        conn.execute("UPDATE images SET updated_at = now() - interval '1 hour'")
    tick = Event(type="dev.knative.sources.ping", source="/ping", data={})
    headers, body = encode_binary(tick)
    headers.update(p.event_headers)
    r = p.client.post("/events/sweeper", headers=headers, content=body)
    assert r.status_code == 202 and r.json()["restarted"] == 1
    [d] = queued(p)
    assert from_json(d["event"]).data["imageId"] == image_id
    # A second tick while the delivery is pending restarts nothing.
    assert p.client.post("/events/sweeper", headers=headers, content=body).json()["restarted"] == 0


def test_delete_removes_objects_vector_and_row(platform: Platform) -> None:
    p = platform
    t = p.signup()
    image_id = upload(p, t, "a.jpg", encode(photo("coffee.png"))).json()["imageId"]
    event = from_json(queued(p)[0]["event"])
    for path in ("/events/process-image", "/events/extract", "/events/index-vector"):
        _, event = deliver(p, path, event, "binary")  # type: ignore[assignment]
    assert state(p, image_id) == ("indexed", 1)
    other = p.signup("Other")
    assert p.client.delete(f"/api/images/{image_id}", headers=other["headers"]).status_code == 404
    assert p.client.get(f"/api/images/{image_id}", headers=other["headers"]).status_code == 404
    assert p.client.delete(f"/api/images/{image_id}", headers=t["headers"]).status_code == 204
    assert p.client.get(f"/api/images/{image_id}", headers=t["headers"]).status_code == 404
    bucket = p.container.storage.root / t["tenant"]["minioBucketName"]
    assert [x for x in bucket.rglob("*") if x.is_file()] == []
    with p.container.db.tx() as conn:
        assert conn.execute("SELECT count(*) FROM images").fetchone()[0] == 0
    space = t["tenant"]["qdrantCollectionName"]
    assert p.container.vectors.count(space, tenant_id=uuid.UUID(t["tenant"]["id"])) == 0


def test_isolated_tenant_gets_its_own_collection(platform: Platform) -> None:
    p = platform
    # isolatedVectors is an operator's grant: public sign-up cannot take it.
    body = {
        "name": "Isolated",
        "adminEmail": "iso@example.com",
        "adminPassword": "password-123",
        "settings": {"isolatedVectors": True},
    }
    r = p.client.post("/api/tenants", json=body)
    assert r.status_code == 403 and r.json()["error"]["code"] == "operator_only_setting"
    tenant, pair = p.container.tenants.create(
        name="Isolated",
        admin_email="iso@example.com",
        admin_password="password-123",
        settings={"isolatedVectors": True},
        operator=True,
    )
    t = {
        "tenant": {"id": str(tenant.id)},
        "headers": {"Authorization": f"Bearer {pair.access_token}"},
    }
    space = tenant.qdrant_collection_name
    assert space == f"tenant_{t['tenant']['id']}_images"
    image_id = upload(p, t, "a.jpg", encode(photo("coffee.png"))).json()["imageId"]
    event = from_json(queued(p)[0]["event"])
    for path in ("/events/process-image", "/events/extract", "/events/index-vector"):
        _, event = deliver(p, path, event, "binary")  # type: ignore[assignment]
    assert p.container.vectors.count(space) == 1
    assert state(p, image_id) == ("indexed", 1)


def test_extract_http_routes(platform: Platform) -> None:
    c = platform.client
    models = {m["name"]: m for m in c.get("/models").json()}
    assert models["efficientnet-lite0"]["loaded"] and models["resnet50"]["dimension"] == 2048
    # Inference needs credentials, and counts against the tenant's daily quota.
    anonymous = c.post("/extract", files={"file": ("a.jpg", encode(photo("coffee.png")))})
    assert anonymous.status_code == 401
    # Another platform function (search by image) presents the shared secret; a guess does not.
    internal = c.post(
        "/extract",
        files={"file": ("a.jpg", encode(photo("coffee.png")))},
        headers=platform.event_headers,
    )
    assert internal.status_code == 200 and internal.json()["shape"] == [1280]
    guessed = c.post(
        "/extract",
        files={"file": ("a.jpg", encode(photo("coffee.png")))},
        headers={"Authorization": "Bearer not-the-secret"},
    )
    assert guessed.status_code == 401
    t = platform.signup()
    c.headers.update(t["headers"])
    one = c.post("/extract", files={"file": ("a.jpg", encode(photo("coffee.png")))}).json()
    assert one["shape"] == [1280] and one["model"] == "efficientnet-lite0"
    batch = c.post(
        "/extract/batch",
        files=[
            ("files", ("a.jpg", encode(photo("coffee.png")))),
            ("files", ("b.jpg", encode(photo("rocket.jpg")))),
        ],
    )
    results = batch.json()["results"]
    assert [r["filename"] for r in results] == ["a.jpg", "b.jpg"]
    assert (
        abs(sum(x * y for x, y in zip(results[0]["features"], one["features"], strict=True)) - 1)
        < 1e-4
    )
    bad = c.post("/extract", files={"file": ("a.jpg", b"not an image")})
    assert bad.status_code == 415 and bad.json()["error"]["code"] == "unsupported_format"
    wrong = c.post(
        "/extract",
        files={"file": ("a.jpg", encode(photo("coffee.png")))},
        data={"model": "resnet50"},
    )
    assert wrong.status_code == 400 and wrong.json()["error"]["code"] == "model_not_loaded"
    platform.container.gate.flush()  # calls are counted in memory and flushed in batches
    with platform.container.db.tx() as conn:
        calls = conn.execute("SELECT api_calls FROM usage_daily").fetchone()[0]
    assert calls >= 4  # the user's calls; the internal one above is not counted
