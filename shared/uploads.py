"""Reading a request body by hand, after authentication (the handlers that call this declare
no body parameters, so FastAPI resolves the auth dependency before any byte of the body is read).

Multipart: exactly the named file parts, a filename without control characters, a bounded
number of fields, form values parsed by type. JSON: validated into a model. Anything else is a
400 with a code, never a silently dropped part.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData, UploadFile

from shared.errors import InvalidInput
from shared.validation import filename_ok, has_control

MAX_FIELDS = 16
M = TypeVar("M", bound=BaseModel)


async def read_form(request: Request, *, max_files: int) -> FormData:
    return await request.form(max_files=max_files + 1, max_fields=MAX_FIELDS)


def clean_filename(upload: UploadFile, default: str = "image") -> str:
    name = (upload.filename or default).strip() or default
    if not filename_ok(name):
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


def number(form: FormData, name: str, default: float, *, integer: bool = False) -> float:
    """A numeric form field (``default`` when absent or empty); 400 invalid_<name> otherwise.
    Ranges are the service's to check."""
    value = field(form, name)
    if value is None or value == "":
        return default
    try:
        return int(value) if integer else float(value)
    except ValueError:
        raise InvalidInput(f"{name} must be a number", code=f"invalid_{name}") from None


def flag(form: FormData, name: str, default: bool) -> bool:
    """A boolean form field: true/false/1/0 (``default`` when absent or empty)."""
    value = (field(form, name) or str(default)).lower()
    if value not in ("true", "false", "1", "0"):
        raise InvalidInput(f"{name} must be true or false", code=f"invalid_{name}")
    return value in ("true", "1")


async def read_json(request: Request, model: type[M]) -> M:
    """A JSON body validated into ``model``: 400 invalid_json when it is not JSON, 400
    validation_error naming the first bad field (as ``field: message``)."""
    try:
        return model.model_validate(json.loads(await request.body()))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidInput("the request body is not valid JSON", code="invalid_json") from None
    except RecursionError:  # the depth guard checks declared JSON; this is the backstop
        raise InvalidInput("the JSON body is nested too deeply", code="json_too_deep") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidInput(f"{where}: {first['msg']}", code="validation_error") from None


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
