"""Object storage behind one interface: the MinIO SDK (any S3 endpoint) or a local directory.

Keys: ``images/{imageId}/original``, ``images/{imageId}/thumb-256.webp``, ``…/thumb-128.webp``,
in one bucket per tenant.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Protocol

from shared.config import Settings
from shared.errors import InvalidInput, NotFound, TransientError
from shared.telemetry import span

BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def original_key(image_id: object) -> str:
    return f"images/{image_id}/original"


def thumb_key(image_id: object, size: int) -> str:
    return f"images/{image_id}/thumb-{size}.webp"


class ObjectStore(Protocol):
    def ensure_bucket(self, bucket: str) -> None: ...
    def put(self, bucket: str, key: str, data: bytes, content_type: str) -> None: ...
    def get(self, bucket: str, key: str) -> bytes: ...
    def exists(self, bucket: str, key: str) -> bool: ...
    def delete(self, bucket: str, key: str) -> None: ...
    def delete_prefix(self, bucket: str, prefix: str) -> int: ...
    def remove_bucket(self, bucket: str) -> None: ...


def _check_key(key: str) -> None:
    if not key or key.startswith("/") or ".." in key.split("/") or "\\" in key:
        raise InvalidInput("invalid object key", code="invalid_key")


class LocalDiskStore:
    """The embedded default: ``<root>/<bucket>/<key>``, written atomically (temp + rename)."""

    def __init__(self, root: Path):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def _bucket(self, bucket: str) -> Path:
        if not BUCKET_RE.match(bucket):
            raise InvalidInput("invalid bucket name", code="invalid_bucket")
        return self.root / bucket

    def _path(self, bucket: str, key: str) -> Path:
        _check_key(key)
        base = self._bucket(bucket)
        if not base.is_dir():
            raise NotFound(f"bucket {bucket} does not exist", code="bucket_not_found")
        return base / key

    def ensure_bucket(self, bucket: str) -> None:
        self._bucket(bucket).mkdir(parents=True, exist_ok=True)

    def put(self, bucket: str, key: str, data: bytes, content_type: str) -> None:  # noqa: ARG002
        # The local disk keeps no object metadata; the images row records the content type.
        path = self._path(bucket, key)
        with span("storage.put", bucket=bucket, key=key):
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)

    def get(self, bucket: str, key: str) -> bytes:
        path = self._path(bucket, key)
        with span("storage.get", bucket=bucket, key=key):
            try:
                return path.read_bytes()
            except FileNotFoundError as exc:
                raise NotFound("object not found", code="object_not_found") from exc

    def exists(self, bucket: str, key: str) -> bool:
        try:
            return self._path(bucket, key).is_file()
        except NotFound:
            return False

    def delete(self, bucket: str, key: str) -> None:
        try:
            self._path(bucket, key).unlink(missing_ok=True)
        except NotFound:
            return

    def delete_prefix(self, bucket: str, prefix: str) -> int:
        base = self._bucket(bucket)
        _check_key(prefix.rstrip("/") or "x")
        target = base / prefix
        count = 0
        if target.is_dir():
            count = sum(1 for p in target.rglob("*") if p.is_file())
            shutil.rmtree(target, ignore_errors=True)
        return count

    def remove_bucket(self, bucket: str) -> None:
        shutil.rmtree(self._bucket(bucket), ignore_errors=True)


class MinioStore:
    """Any S3-compatible endpoint through the MinIO SDK (MinIO, SeaweedFS, AWS S3)."""

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        *,
        secure: bool = False,
        region: str | None = None,
        notify_arn: str | None = None,
    ):
        from minio import Minio

        self.client = Minio(
            endpoint, access_key=access_key, secret_key=secret_key, secure=secure, region=region
        )
        self.notify_arn = notify_arn

    def _call(self, what: str, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        from minio.error import S3Error
        from urllib3.exceptions import HTTPError

        try:
            return fn(*args, **kwargs)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchBucket", "NoSuchObject"):
                raise NotFound(f"{what}: not found", code="object_not_found") from exc
            raise TransientError(f"object storage error during {what}") from exc
        except HTTPError as exc:
            raise TransientError(f"object storage unreachable during {what}") from exc

    def ensure_bucket(self, bucket: str) -> None:
        if not BUCKET_RE.match(bucket):
            raise InvalidInput("invalid bucket name", code="invalid_bucket")
        with span("storage.ensure_bucket", bucket=bucket):
            if not self._call("bucket_exists", self.client.bucket_exists, bucket):
                from minio.error import S3Error

                try:
                    self.client.make_bucket(bucket)
                except S3Error as exc:  # a concurrent creator won the race
                    if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise TransientError("could not create bucket") from exc
            if self.notify_arn:
                self._call(
                    "set_bucket_notification",
                    self.client.set_bucket_notification,
                    bucket,
                    notification_config(self.notify_arn),
                )

    def put(self, bucket: str, key: str, data: bytes, content_type: str) -> None:
        _check_key(key)
        with span("storage.put", bucket=bucket, key=key):
            self._call(
                "put",
                self.client.put_object,
                bucket,
                key,
                io.BytesIO(data),
                len(data),
                content_type=content_type,
            )

    def get(self, bucket: str, key: str) -> bytes:
        _check_key(key)
        with span("storage.get", bucket=bucket, key=key):
            resp = self._call("get", self.client.get_object, bucket, key)
            try:
                data: bytes = resp.read()
                return data
            finally:
                resp.close()
                resp.release_conn()

    def exists(self, bucket: str, key: str) -> bool:
        try:
            self._call("stat", self.client.stat_object, bucket, key)
            return True
        except NotFound:
            return False

    def delete(self, bucket: str, key: str) -> None:
        _check_key(key)
        try:
            self._call("delete", self.client.remove_object, bucket, key)
        except NotFound:
            return

    def delete_prefix(self, bucket: str, prefix: str) -> int:
        try:
            objects = list(
                self._call("list", self.client.list_objects, bucket, prefix=prefix, recursive=True)
            )
        except NotFound:
            return 0
        for obj in objects:
            self.delete(bucket, obj.object_name)
        return len(objects)

    def remove_bucket(self, bucket: str) -> None:
        self.delete_prefix(bucket, "")
        try:
            self._call("remove_bucket", self.client.remove_bucket, bucket)
        except NotFound:
            return


def notification_config(arn: str) -> Any:
    """s3:ObjectCreated for originals only (thumbnails would be noise) to one MinIO target."""
    from minio.notificationconfig import (
        NotificationConfig,
        PrefixFilterRule,
        QueueConfig,
        SuffixFilterRule,
    )

    return NotificationConfig(
        queue_config_list=[
            QueueConfig(
                ["s3:ObjectCreated:*"],
                queue=arn,
                config_id="deeplens-originals",
                prefix_filter_rule=PrefixFilterRule("images/"),
                suffix_filter_rule=SuffixFilterRule("/original"),
            )
        ]
    )


def build_store(settings: Settings) -> ObjectStore:
    s = settings.storage
    if s.backend == "s3":
        return MinioStore(
            s.endpoint,
            s.access_key,
            s.secret_key.get_secret_value(),
            secure=s.secure,
            region=s.region,
            notify_arn=s.notify_arn,
        )
    return LocalDiskStore(settings.data_dir / "objects")
