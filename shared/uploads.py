"""Reading a multipart upload, after authentication (the handlers that call this declare no
body parameters, so FastAPI resolves the auth dependency before any byte of the body is read).

Exactly the named file parts, a filename without control characters, a bounded number of
fields: anything else is a 400 with a code, never a silently dropped part.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from starlette.datastructures import FormData, UploadFile

from shared.errors import InvalidInput
from shared.validation import has_control

MAX_FIELDS = 16


async def read_form(request: Request, *, max_files: int) -> FormData:
    return await request.form(max_files=max_files + 1, max_fields=MAX_FIELDS)


def clean_filename(upload: UploadFile, default: str = "image") -> str:
    name = (upload.filename or default).strip() or default
    if has_control(name) or len(name) > 255:
        raise InvalidInput(
            "the file name must be at most 255 characters without control characters",
            code="invalid_filename",
        )
    return name


def one_file(form: FormData, field: str = "file") -> UploadFile:
    parts = [p for p in form.getlist(field) if not isinstance(p, str)]
    if not parts:
        raise InvalidInput(f"send the image as multipart field '{field}'", code="file_required")
    if len(parts) > 1:
        raise InvalidInput(f"send exactly one '{field}' part", code="too_many_files")
    return parts[0]


def field(form: FormData, name: str) -> str | None:
    value = form.get(name)
    if value is None or not isinstance(value, str):
        return None
    if has_control(value):
        raise InvalidInput(f"{name} must not contain control characters", code=f"invalid_{name}")
    return value


def multipart_body(
    *files: str, fields: dict[str, Any] | None = None, required: list[str] | None = None
) -> dict[str, Any]:
    """openapi_extra for a multipart route (its body is read by hand, after authentication)."""
    props: dict[str, Any] = {f: {"type": "string", "format": "binary"} for f in files}
    props.update(fields or {})
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": props,
                        "required": required or list(files),
                    }
                }
            },
        }
    }
