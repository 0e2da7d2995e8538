"""The API's documents: ``/openapi.json`` with the real error shape, and ``/docs`` served from
this package (no CDN: the default Swagger UI and ReDoc pages load JavaScript from one) under a
strict Content-Security-Policy.

The OpenAPI document declares every 4xx as the platform's error body (``{"error": {"code",
"message"}}``) instead of FastAPI's ``HTTPValidationError``, so a client (and schemathesis in
CI) can check each answer against it.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, Response

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self';"
    " img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}
_ERROR_RESPONSE = {
    "description": "Error: a machine-readable code and a message",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}


def _document(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        doc = get_openapi(title=app.title, version=app.version, routes=app.routes)
        for item in doc.get("paths", {}).values():
            for op in item.values():
                responses = op.setdefault("responses", {})
                responses.pop("422", None)
                responses["4XX"] = _ERROR_RESPONSE
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        schemas["Error"] = ERROR_SCHEMA
        app.openapi_schema = doc
    return app.openapi_schema


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text()


def install(app: FastAPI) -> None:
    """Call on an app built with ``docs_url=None, redoc_url=None``."""
    app.openapi = lambda: _document(app)  # type: ignore[method-assign]
    headers = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff"}

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(_asset("docs.html"), headers=headers)

    @app.get("/docs/app.js", include_in_schema=False)
    def docs_js() -> Response:
        return Response(_asset("docs.js"), media_type="text/javascript", headers=headers)

    @app.get("/docs/docs.css", include_in_schema=False)
    def docs_css() -> Response:
        return Response(_asset("docs.css"), media_type="text/css", headers=headers)
