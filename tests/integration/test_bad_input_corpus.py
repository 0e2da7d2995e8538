"""The standing attack suite, part 2: the bad-upload and bad-JSON corpus. Each case: the status,
the machine-readable error code, and nothing stored (no tenant, user, key or image row)."""

from __future__ import annotations

import io
import json
import struct
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image

from tests.conftest import Platform, make_platform
from tests.photos import encode, photo

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def corpus_platform(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Iterator[Any]:
    """One platform for the whole corpus (cases are independent: each stores nothing)."""
    import uuid

    import psycopg

    from tests.conftest import ADMIN_URL, _url_for

    name = f"deeplens_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    p = make_platform(_url_for(name), tmp_path_factory.mktemp("corpus"), embedder=embedder)
    t = p.signup("Corpus")
    root_email = "root@corpus.test"
    p.container.users.create_system_admin(email=root_email, password="root-password-1")
    r = p.client.post("/api/auth/login", json={"email": root_email, "password": "root-password-1"})
    ctx = {"p": p, "t": t, "root": {"Authorization": f"Bearer {r.json()['accessToken']}"}}
    try:
        yield ctx
    finally:
        p.fn.stop()
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def stored(p: Platform) -> tuple[int, ...]:
    with p.container.db.tx() as conn:
        return tuple(
            int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0])  # type: ignore[index]
            for t in ("tenants", "users", "tenant_api_keys", "images", "broker_deliveries")
        ) + (  # nothing counted in usage either (a refused search is not a search)
            int(conn.execute("SELECT coalesce(sum(searches), 0) FROM usage_daily").fetchone()[0]),  # type: ignore[index]
        )


def _png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    idat = b"IDAT" + zlib.compress(b"\0" * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", len(ihdr))
        + chunk
        + struct.pack(">I", zlib.crc32(chunk))
        + struct.pack(">I", len(idat) - 4)
        + idat
        + struct.pack(">I", zlib.crc32(idat))
    )


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _raw_part(filename: bytes, data: bytes) -> bytes:
    """A multipart body written by hand (clients percent-encode a NUL; attackers do not)."""
    return (
        b'--zzz\r\nContent-Disposition: form-data; name="file"; filename="'
        + filename
        + b'"\r\nContent-Type: image/jpeg\r\n\r\n'
        + data
        + b"\r\n--zzz--\r\n"
    )


JPEG = encode(photo("coffee.png"))
UPLOADS: list[tuple[str, Any, int, str]] = [
    ("empty file", [("file", ("a.jpg", b""))], 422, "empty_file"),
    ("text named .jpg", [("file", ("a.jpg", b"hello world"))], 415, "unsupported_format"),
    ("gif", [("file", ("a.gif", b"GIF89a" + b"\0" * 100))], 415, "unsupported_format"),
    ("truncated jpeg", [("file", ("a.jpg", JPEG[: len(JPEG) // 2]))], 422, "corrupt_image"),
    ("png header only", [("file", ("a.png", _png_header(64, 64)))], 422, "corrupt_image"),
    ("jpeg named .png", [("file", ("a.png", JPEG))], 415, "extension_mismatch"),
    (
        "pixel bomb header",
        [("file", ("a.png", _png_header(100_000, 100_000)))],
        413,
        "image_too_many_pixels",
    ),
    (
        "decoded-bytes bomb",
        [("file", ("a.png", _png(Image.new("RGBA", (7000, 7000)))))],
        413,
        "image_too_large_decoded",
    ),
    ("NUL in filename", _raw_part(b"a\x00.jpg", JPEG), 400, "invalid_filename"),
    ("control char in filename", [("file", ("a\x1b[31m.jpg", JPEG))], 400, "invalid_filename"),
    ("filename 300 chars", [("file", ("a" * 296 + ".jpg", JPEG))], 400, "invalid_filename"),
    (
        "two file parts",
        [("file", ("a.jpg", JPEG)), ("file", ("b.jpg", JPEG))],
        400,
        "too_many_files",
    ),
    ("wrong field name", [("image", ("a.jpg", JPEG))], 400, "file_required"),
    ("no parts", None, 400, "file_required"),
]


@pytest.mark.parametrize(
    ("files", "status", "code"),
    [pytest.param(f, s, c, id=name) for name, f, s, c in UPLOADS],
)
def test_bad_upload(corpus_platform: dict[str, Any], files: Any, status: int, code: str) -> None:
    p, t = corpus_platform["p"], corpus_platform["t"]
    before = stored(p)
    if isinstance(files, bytes):
        headers = {**t["headers"], "content-type": "multipart/form-data; boundary=zzz"}
        r = p.client.post("/api/images/upload", headers=headers, content=files)
    else:
        r = p.client.post(
            "/api/images/upload",
            headers=t["headers"],
            files=files,
            data=None if files else {"x": "1"},
        )
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    assert stored(p) == before


def _deep(n: int) -> str:
    return "[" * n + "]" * n


# (name, method, path template, body (str = raw), role, status, code)
JSONS: list[tuple[str, str, str, Any, str, int, str]] = [
    (
        "NUL in tenant name",
        "POST",
        "/api/tenants",
        {"name": "a\x00b"},
        "anon",
        422,
        "validation_error",
    ),
    (
        "NUL in email",
        "POST",
        "/api/tenants",
        {"adminEmail": "a\x00@b.com"},
        "anon",
        422,
        "validation_error",
    ),
    ("NUL in slug", "POST", "/api/tenants", {"slug": "a\x00b"}, "anon", 422, "validation_error"),
    (
        "NUL in password",
        "POST",
        "/api/tenants",
        {"adminPassword": "pass\x00word1"},
        "anon",
        422,
        "validation_error",
    ),
    (
        "NUL in settings",
        "POST",
        "/api/tenants",
        {"settings": {"k": "v\x00"}},
        "anon",
        422,
        "validation_error",
    ),
    (
        "settings too deep",
        "POST",
        "/api/tenants",
        {"settings": {"a": json.loads(_deep(12))}},
        "anon",
        422,
        "validation_error",
    ),
    (
        "operator-only setting",
        "POST",
        "/api/tenants",
        {"settings": {"isolatedVectors": True}},
        "anon",
        403,
        "operator_only_setting",
    ),
    ("deep JSON on sign-up", "POST", "/api/tenants", _deep(5000), "anon", 400, "json_too_deep"),
    (
        "deep JSON on search",
        "POST",
        "/api/images/search",
        _deep(5000),
        "owner",
        400,
        "json_too_deep",
    ),
    ("not JSON", "POST", "/api/tenants", "{nope", "anon", 400, "invalid_json"),
    ("array body", "POST", "/api/tenants", "[]", "anon", 422, "validation_error"),
    (
        "NaN in vector",
        "POST",
        "/api/images/search",
        '{"vector": [NaN, 1.0]}',
        "owner",
        400,
        "validation_error",
    ),
    (
        "vector of the wrong dimension",
        "POST",
        "/api/images/search",
        {"vector": [0.1] * 7},
        "owner",
        400,
        "vector_dimension_mismatch",
    ),
    (
        "vector too long",
        "POST",
        "/api/images/search",
        {"vector": [0.1] * 9000},
        "owner",
        400,
        "validation_error",
    ),
    (
        "NUL in login email",
        "POST",
        "/api/auth/login",
        {"email": "a\x00@b.com", "password": "x"},
        "anon",
        422,
        "validation_error",
    ),
    (
        "NUL in register slug",
        "POST",
        "/api/auth/register",
        {"email": "a@b.com", "password": "password-1", "tenantSlug": "a\x00"},
        "anon",
        422,
        "validation_error",
    ),
    (
        "NUL in api key name",
        "POST",
        "/api/tenants/{tid}/api-keys",
        {"name": "k\x00"},
        "owner",
        422,
        "validation_error",
    ),
    (
        "NUL in tenant rename",
        "PUT",
        "/api/tenants/{tid}",
        {"name": "x\x00"},
        "owner",
        422,
        "validation_error",
    ),
    (
        "settings null",
        "PUT",
        "/api/tenants/{tid}",
        {"settings": None},
        "owner",
        422,
        "validation_error",
    ),
    (
        "unknown status",
        "PUT",
        "/api/tenants/{tid}",
        {"status": "Hacked"},
        "root",
        422,
        "validation_error",
    ),
    (
        "unknown tier",
        "PUT",
        "/api/tenants/{tid}",
        {"tier": "Platinum"},
        "root",
        422,
        "validation_error",
    ),
    (
        "max users overflow",
        "PUT",
        "/api/tenants/{tid}",
        {"maxUsers": 2**40},
        "root",
        422,
        "validation_error",
    ),
    (
        "storage overflow",
        "PUT",
        "/api/tenants/{tid}",
        {"maxStorageBytes": 2**70},
        "root",
        422,
        "validation_error",
    ),
    (
        "unknown role",
        "POST",
        "/api/tenants/{tid}/users",
        {"email": "x@y.com", "role": "God"},
        "owner",
        422,
        "validation_error",
    ),
    (
        "extra field",
        "POST",
        "/api/tenants/{tid}/api-keys",
        {"name": "k", "tenantId": "x"},
        "owner",
        422,
        "validation_error",
    ),
    (
        "string for int",
        "PUT",
        "/api/tenants/{tid}",
        {"maxUsers": "many"},
        "root",
        422,
        "validation_error",
    ),
    (
        "body over 1 MB",
        "POST",
        "/api/tenants",
        "[" + "1," * 600_000 + "1]",
        "anon",
        413,
        "payload_too_large",
    ),
]
QUERIES: list[tuple[str, str, str, int, str]] = [
    (
        "page past bigint",
        "/api/images?page=99999999999999999999999",
        "owner",
        422,
        "validation_error",
    ),
    (
        "page past offset range",
        "/api/images/duplicates?page=9223372036854775807",
        "owner",
        422,
        "validation_error",
    ),
    ("negative page", "/api/images?page=-1", "owner", 422, "validation_error"),
    (
        "offset past range",
        "/api/tenants?offset=99999999999999999999",
        "root",
        422,
        "validation_error",
    ),
    (
        "users offset past range",
        "/api/tenants/{tid}/users?offset=9223372036854775808",
        "owner",
        422,
        "validation_error",
    ),
    (
        "failed events offset",
        "/api/admin/failed-events?offset=99999999999999999999",
        "root",
        422,
        "validation_error",
    ),
    ("unknown status filter", "/api/images?status=hacked", "owner", 422, "validation_error"),
    ("NUL in query", "/api/images?status=%00", "owner", 400, "invalid_url"),
    ("NUL in path", "/api/tenants/slug/a%00b", "owner", 400, "invalid_url"),
    (
        "NaN threshold",
        "/api/images/{iid}/duplicates?threshold=NaN",
        "owner",
        422,
        "validation_error",
    ),
    (
        "huge thumbnail size",
        "/api/images/{iid}/thumbnail/99999999999999999999",
        "owner",
        422,
        "validation_error",
    ),
]


def _headers(ctx: dict[str, Any], role: str) -> dict[str, str]:
    return {"anon": {}, "owner": ctx["t"]["headers"], "root": ctx["root"]}[role]


def _base_signup() -> dict[str, Any]:
    return {"name": "Bad", "adminEmail": "bad@example.com", "adminPassword": "password-123"}


@pytest.mark.parametrize(
    ("method", "path", "body", "role", "status", "code"),
    [pytest.param(*case[1:], id=case[0]) for case in JSONS],
)
def test_bad_json(
    corpus_platform: dict[str, Any],
    method: str,
    path: str,
    body: Any,
    role: str,
    status: int,
    code: str,
) -> None:
    p = corpus_platform["p"]
    path = path.replace("{tid}", corpus_platform["t"]["tenant"]["id"])
    if isinstance(body, dict) and path == "/api/tenants":
        body = {**_base_signup(), **body}
    before = stored(p)
    headers = {"content-type": "application/json", **_headers(corpus_platform, role)}
    content = body if isinstance(body, str) else json.dumps(body)
    r = p.client.request(method, path, headers=headers, content=content.encode())
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    assert stored(p) == before
    assert p.client.get("/api/auth/me", headers=corpus_platform["t"]["headers"]).status_code == 200


@pytest.mark.parametrize(
    ("path", "role", "status", "code"),
    [pytest.param(*case[1:], id=case[0]) for case in QUERIES],
)
def test_bad_query(
    corpus_platform: dict[str, Any], path: str, role: str, status: int, code: str
) -> None:
    p = corpus_platform["p"]
    path = path.replace("{tid}", corpus_platform["t"]["tenant"]["id"])
    path = path.replace("{iid}", "00000000-0000-4000-8000-000000000000")
    r = p.client.get(path, headers=_headers(corpus_platform, role))
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code


@pytest.mark.parametrize(
    ("ctype", "status", "code"),
    [
        # Not JSON by its media type: refused before the body is parsed.
        ("application/jsonx", 415, "unsupported_content_type"),
        ("multipart/form-datax", 415, "unsupported_content_type"),
        # JSON with parameters: the depth guard reads the bare media type too.
        ("application/json; charset=utf-8", 400, "json_too_deep"),
        ("Application/JSON", 400, "json_too_deep"),
    ],
)
def test_deep_json_under_any_content_type_is_a_4xx(
    corpus_platform: dict[str, Any], ctype: str, status: int, code: str
) -> None:
    """A body of 100,000 nested arrays sent to search under a media type that only starts
    like JSON once reached json.loads past the depth guard (RecursionError: a 500)."""
    p = corpus_platform["p"]
    before = stored(p)
    headers = {**_headers(corpus_platform, "owner"), "content-type": ctype}
    r = p.client.post("/api/images/search", headers=headers, content=b"[" * 100_000)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    assert stored(p) == before


def test_a_repeated_content_type_is_refused_before_any_parser(
    corpus_platform: dict[str, Any],
) -> None:
    """Two Content-Types: the body limit and the depth guard read one, FastAPI's parser the
    other, so a JSON body got past both as a "multipart" upload (issue: adversarial review)."""
    p = corpus_platform["p"]
    before = stored(p)
    headers = [
        *_headers(corpus_platform, "owner").items(),
        ("content-type", "application/json"),
        ("content-type", "multipart/form-data; boundary=x"),
    ]
    r = p.client.post("/api/images/search", headers=headers, content=b"[" * 100_000)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "duplicate_header"
    r = p.client.post("/api/tenants", headers=headers[-2:], content=b"[" * 100_000)
    assert r.status_code == 400, r.text
    assert stored(p) == before
