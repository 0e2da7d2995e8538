"""The small error taxonomy every function maps to HTTP in one place (shared/http.py).

Driver errors (psycopg, minio, qdrant) are translated into these inside shared/, so handlers
never see them and nothing unhandled reaches func-python (which would echo exception text).
"""

from __future__ import annotations


class DeepLensError(Exception):
    status = 500
    code = "internal_error"

    def __init__(
        self, message: str, *, code: str | None = None, headers: dict[str, str] | None = None
    ):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.headers = headers or {}


class InvalidInput(DeepLensError):
    status = 400
    code = "invalid_input"


class Unauthorized(DeepLensError):
    status = 401
    code = "unauthorized"


class Forbidden(DeepLensError):
    status = 403
    code = "forbidden"


class NotFound(DeepLensError):
    status = 404
    code = "not_found"


class Conflict(DeepLensError):
    status = 409
    code = "conflict"


class PayloadTooLarge(DeepLensError):
    status = 413
    code = "payload_too_large"


class UnsupportedMedia(DeepLensError):
    status = 415
    code = "unsupported_media_type"


class Unprocessable(DeepLensError):
    status = 422
    code = "unprocessable"


class QuotaExceeded(DeepLensError):
    status = 429
    code = "quota_exceeded"


class TransientError(DeepLensError):
    """Worth retrying: the broker redelivers on the non-2xx this maps to."""

    status = 503
    code = "unavailable"
