"""MinIO bucket notifications, as MinIO sends them and as a KafkaSource wraps them, sent to
process-image: a directly stored original becomes an indexed image; a notification for an
image the API already handles changes nothing (no double processing)."""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import quote

import pytest

from events.codec import Event, decode
from events.triggers import MINIO_KAFKA_SOURCE, triggers_for
from tests.conftest import Platform
from tests.integration.test_pipeline import deliver, queued, state, upload
from tests.photos import encode, photo

pytestmark = pytest.mark.integration


def minio_record(bucket: str, key: str, size: int) -> dict[str, Any]:
    """The JSON MinIO publishes to its Kafka target for a PUT (keys are URL-encoded)."""
    return {
        "EventName": "s3:ObjectCreated:Put",
        "Key": f"{bucket}/{key}",
        "Records": [
            {
                "eventVersion": "2.0",
                "eventSource": "minio:s3",
                "awsRegion": "",
                "eventTime": "2026-11-27T10:00:00.000Z",
                "eventName": "s3:ObjectCreated:Put",
                "userIdentity": {"principalId": "deeplens"},
                "requestParameters": {
                    "principalId": "deeplens",
                    "region": "",
                    "sourceIPAddress": "10.0.0.7",
                },
                "responseElements": {
                    "x-amz-id-2": "dd9025bab4ad464b",
                    "x-amz-request-id": "17E0A3B5C0F1A2B3",
                },
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "deeplens-originals",
                    "bucket": {
                        "name": bucket,
                        "ownerIdentity": {"principalId": "deeplens"},
                        "arn": f"arn:aws:s3:::{bucket}",
                    },
                    "object": {
                        "key": quote(key, safe=""),
                        "size": size,
                        "eTag": "9b2cf535f27731c974343645a3985328",
                        "contentType": "image/jpeg",
                        "userMetadata": {"content-type": "image/jpeg"},
                        "sequencer": "17E0A3B5C1D2E3F4",
                    },
                },
                "source": {"host": "10.0.0.7", "port": "", "userAgent": "MinIO (linux; amd64)"},
            }
        ],
    }


def kafka_event(record: dict[str, Any], offset: int = 42) -> Event:
    """What KafkaSource sends: type dev.knative.kafka.event, the record value as data."""
    return Event(
        type="dev.knative.kafka.event",
        source=f"{MINIO_KAFKA_SOURCE}#deeplens-minio-events",
        id=f"partition:0/offset:{offset}",
        subject=f"partition:0#{offset}",
        data=record,
        extensions={"key": "null"},
    )


def test_directly_stored_original_becomes_indexed(platform: Platform) -> None:
    p = platform
    t = p.signup()
    bucket = t["tenant"]["minioBucketName"]
    image_id = str(uuid.uuid4())
    blob = encode(photo("chelsea.png"))
    p.container.storage.put(bucket, f"images/{image_id}/original", blob, "image/jpeg")
    event = kafka_event(minio_record(bucket, f"images/{image_id}/original", len(blob)))
    assert [tr.function for tr in triggers_for(event.type, event.source)] == ["process-image"]
    code, reply = deliver(p, "/events/process-image", event, "binary")
    assert code == 200 and reply is not None and reply.type == "io.deeplens.image.validated.v1"
    for path in ("/events/extract", "/events/index-vector"):
        code, reply = deliver(p, path, reply, "binary")  # type: ignore[arg-type]
        assert code == 200
    assert state(p, image_id) == ("indexed", 1)
    got = p.client.get(f"/api/images/{image_id}", headers=t["headers"]).json()
    assert got["status"] == "indexed" and got["width"] == 451
    # The same record again (Kafka redelivery): nothing changes.
    code, again = deliver(p, "/events/process-image", event, "structured")
    assert code == 202 and again is None
    assert state(p, image_id) == ("indexed", 1)


def test_notification_for_an_api_upload_is_a_no_op(platform: Platform) -> None:
    p = platform
    t = p.signup()
    image_id = upload(p, t, "a.jpg", encode(photo("coffee.png"))).json()["imageId"]
    bucket = t["tenant"]["minioBucketName"]
    event = kafka_event(minio_record(bucket, f"images/{image_id}/original", 1))
    code, reply = deliver(p, "/events/process-image", event, "binary")
    assert code == 202 and reply is None
    assert state(p, image_id)[0] == "uploaded"  # still the API's event to process
    assert len(queued(p)) == 1


def test_foreign_and_thumbnail_objects_are_ignored(platform: Platform) -> None:
    p = platform
    t = p.signup()
    bucket = t["tenant"]["minioBucketName"]
    for b, key in (
        (bucket, f"images/{uuid.uuid4()}/thumb-256.webp"),
        ("some-other-bucket", f"images/{uuid.uuid4()}/original"),
        (bucket, "notes.txt"),
    ):
        code, reply = deliver(
            p, "/events/process-image", kafka_event(minio_record(b, key, 1)), "binary"
        )
        assert code == 202 and reply is None
    with p.container.db.tx() as conn:
        assert conn.execute("SELECT count(*) FROM images").fetchone()[0] == 0


def test_kafka_record_in_binary_mode_with_raw_json_body(platform: Platform) -> None:
    """KafkaSource puts the record value as the HTTP body with ce-* headers."""
    p = platform
    t = p.signup()
    bucket = t["tenant"]["minioBucketName"]
    image_id = str(uuid.uuid4())
    blob = encode(photo("rocket.jpg"))
    p.container.storage.put(bucket, f"images/{image_id}/original", blob, "image/jpeg")
    body = json.dumps(minio_record(bucket, f"images/{image_id}/original", len(blob))).encode()
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "partition:3/offset:7",
        "ce-type": "dev.knative.kafka.event",
        "ce-subject": "partition:3#7",
        "ce-source": f"{MINIO_KAFKA_SOURCE}#deeplens-minio-events",
        "content-type": "application/json",
        **p.event_headers,
    }
    r = p.client.post("/events/process-image", headers=headers, content=body)
    assert r.status_code == 200
    assert decode(dict(r.headers), r.content).type == "io.deeplens.image.validated.v1"


def test_hostile_notifications_adopt_nothing_they_should_not(platform: Platform) -> None:
    """A key that only looks like an id, a filename an upload would refuse, a suspended
    tenant's bucket, a bucket past its storage limit: never a 500, never a row the API would
    not have made."""
    p = platform
    t = p.signup()
    bucket = t["tenant"]["minioBucketName"]
    blob = encode(photo("chelsea.png"))
    # 36 characters of the id alphabet that are no UUID: ignored (was a ValueError, a 500).
    for fake in ("0" * 36, "-" * 36):
        event = kafka_event(minio_record(bucket, f"images/{fake}/original", 1))
        assert deliver(p, "/events/process-image", event, "binary") == (202, None)
    # A NUL in the metadata filename: adopted under its id instead (was a database error).
    image_id = str(uuid.uuid4())
    p.container.storage.put(bucket, f"images/{image_id}/original", blob, "image/jpeg")
    record = minio_record(bucket, f"images/{image_id}/original", len(blob))
    record["Records"][0]["s3"]["object"]["userMetadata"]["X-Amz-Meta-Filename"] = "a\x00b.jpg"
    code, reply = deliver(p, "/events/process-image", kafka_event(record), "binary")
    assert code == 200 and reply is not None
    got = p.client.get(f"/api/images/{image_id}", headers=t["headers"]).json()
    assert got["filename"] == image_id
    # Past the storage limit: not adopted.
    tenant_id = uuid.UUID(t["tenant"]["id"])
    with p.container.db.tx() as conn:
        conn.execute("UPDATE tenants SET max_storage_bytes = 1 WHERE id = %s", (tenant_id,))
    over = str(uuid.uuid4())
    p.container.storage.put(bucket, f"images/{over}/original", blob, "image/jpeg")
    event = kafka_event(minio_record(bucket, f"images/{over}/original", len(blob)), offset=43)
    assert deliver(p, "/events/process-image", event, "binary") == (202, None)
    # A suspended tenant's bucket: not adopted either.
    with p.container.db.tx() as conn:
        conn.execute(
            "UPDATE tenants SET max_storage_bytes = 10^12, status = 'Suspended' WHERE id = %s",
            (tenant_id,),
        )
    assert deliver(p, "/events/process-image", event, "binary") == (202, None)
    with p.container.db.tx() as conn:
        assert conn.execute("SELECT count(*) FROM images").fetchone()[0] == 1
