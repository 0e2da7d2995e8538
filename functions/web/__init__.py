"""web: the browser UI — GET / serves the app shell, GET /static/* its assets.

Hand-written HTML, CSS and ES modules, served by the platform itself: no Node toolchain at run
time or build time, no third-party CDN, nothing to rebuild when the API changes. The page calls
the same JSON API as any client (tokens in memory, refresh token in sessionStorage).
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from shared.errors import NotFound

router = APIRouter(tags=["web"])
STATIC = resources.files("functions.web") / "static"
TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".html": "text/html",
}
# The UI loads only its own assets and talks only to its own origin.
CSP = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self';"
    " connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@router.get("/", response_class=HTMLResponse)
def index() -> HTMLResponse:
    return HTMLResponse((STATIC / "index.html").read_text(), headers=HEADERS)


@router.get("/static/{name}")
def static(name: str) -> Response:
    suffix = "." + name.rsplit(".", 1)[-1] if "." in name else ""
    entry = STATIC / name
    if "/" in name or name.startswith(".") or suffix not in TYPES or not entry.is_file():
        raise NotFound("no such asset", code="asset_not_found")
    return Response(
        entry.read_bytes(),
        media_type=TYPES[suffix],
        headers={**HEADERS, "Cache-Control": "no-cache"},
    )
