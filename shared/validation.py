"""The input-validation policy, as types: every request model and parameter uses these, so a
malformed value is a clear 4xx before any service runs and never reaches the database.

- strings carry no NUL or other control characters (PostgreSQL refuses NUL in text and jsonb;
  control characters in names end up in logs and other people's screens), and are bounded;
- integers are bounded to what the database stores (bigint) and pages to what a client can
  sensibly ask for (an OFFSET past the range of bigint is a database error, not a 4xx);
- floats are finite;
- free-form JSON (tenant settings) is bounded in depth, size and key count.

Bodies are bounded in size and JSON depth before parsing (shared/guards.py); these types bound
what is inside.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,253}\.[^@\s]{1,63}$")
# C0 controls except tab/newline/carriage return (allowed only in multi-line text), DEL, C1.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_CONTROL_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f]")

MAX_PAGE = 100_000  # pages of at most 200 items: 20M rows deep
MAX_OFFSET = 10_000_000
MAX_BIGINT = 2**63 - 1
JSON_MAX_DEPTH = 8
JSON_MAX_BYTES = 16 * 1024
JSON_MAX_KEYS = 200


def has_control(value: str, *, multiline: bool = False) -> bool:
    return bool((_CONTROL if multiline else _CONTROL_LINE).search(value))


MAX_FILENAME = 255


def filename_ok(name: str) -> bool:
    """A stored image's file name: at most MAX_FILENAME characters, no control characters
    (an upload's multipart name and an adopted object's metadata name alike)."""
    return len(name) <= MAX_FILENAME and not has_control(name)


def _line(value: str) -> str:
    if has_control(value):
        raise ValueError("must not contain NUL or control characters")
    return value


def _text(value: str) -> str:
    if has_control(value, multiline=True):
        raise ValueError("must not contain NUL or control characters")
    return value


def _email(value: str) -> str:
    value = value.strip()
    if not _EMAIL.match(value) or has_control(value):
        raise ValueError("not a valid email address")
    return value


def _password(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    if len(value.encode()) > 72:
        raise ValueError("password must be at most 72 bytes")
    return value


def _json_object(value: dict[str, Any]) -> dict[str, Any]:
    keys = 0

    def walk(node: Any, depth: int) -> None:
        nonlocal keys
        if depth > JSON_MAX_DEPTH:
            raise ValueError(f"nested deeper than {JSON_MAX_DEPTH} levels")
        if isinstance(node, dict):
            for k, v in node.items():
                keys += 1
                if not isinstance(k, str) or has_control(k) or len(k) > 100:
                    raise ValueError("keys are strings of at most 100 characters")
                walk(v, depth + 1)
        elif isinstance(node, list):
            for v in node:
                walk(v, depth + 1)
        elif isinstance(node, str):
            if has_control(node, multiline=True):
                raise ValueError("strings must not contain NUL or control characters")
        elif isinstance(node, int) and not isinstance(node, bool):
            if abs(node) > MAX_BIGINT:
                raise ValueError("integer out of range")
        elif isinstance(node, float):
            if node != node or node in (float("inf"), float("-inf")):
                raise ValueError("numbers must be finite")

    walk(value, 1)
    if keys > JSON_MAX_KEYS:
        raise ValueError(f"at most {JSON_MAX_KEYS} keys")
    if len(json.dumps(value)) > JSON_MAX_BYTES:
        raise ValueError(f"at most {JSON_MAX_BYTES} bytes")
    return value


def line(max_length: int, min_length: int = 0) -> Any:
    """A one-line string type (names, slugs, emails): no control characters, bounded."""
    return Annotated[
        str, Field(min_length=min_length, max_length=max_length), AfterValidator(_line)
    ]


Email = Annotated[str, Field(max_length=320), AfterValidator(_email)]
Password = Annotated[str, Field(min_length=8, max_length=72), AfterValidator(_password)]
AnyPassword = Annotated[str, Field(min_length=1, max_length=256), AfterValidator(_password)]
Name = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_line)]
ShortText = Annotated[str, Field(max_length=100), AfterValidator(_line)]
Text = Annotated[str, Field(max_length=2000), AfterValidator(_text)]
Domain = Annotated[str, Field(max_length=255), AfterValidator(_line)]
Slug = Annotated[str, Field(min_length=1, max_length=48), AfterValidator(_line)]
Token = Annotated[str, Field(min_length=1, max_length=512), AfterValidator(_line)]
JsonObject = Annotated[dict[str, Any], AfterValidator(_json_object)]
Page = Annotated[int, Field(ge=1, le=MAX_PAGE)]
Offset = Annotated[int, Field(ge=0, le=MAX_OFFSET)]
Limit = Annotated[int, Field(ge=1, le=200)]
Bytes = Annotated[int, Field(ge=0, le=MAX_BIGINT)]
Count = Annotated[int, Field(ge=0, le=2**31 - 1)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Similarity = Annotated[float, Field(ge=-1, le=1, allow_inf_nan=False)]
Role = Literal["User", "Admin", "TenantOwner"]
TenantStatus = Literal["Active", "Suspended"]
Tier = Literal["Free", "Professional", "Enterprise"]
