"""THE public route table: which function serves which path at the ingress.

It drives the local ingress (``deeplens up``) and is the source of the HTTPRoute in
infra/knative/routes.yaml (a test fails when they disagree). Rules are tried in order, like
the generated HTTPRoute's; the event endpoints (``/events/*``) are never routed: only the
broker reaches them, as cluster-local services on Knative.
"""

from __future__ import annotations

import re
from functools import lru_cache

# (match kind, path, method or None, function)
ROUTES: list[tuple[str, str, str | None, str]] = [
    ("PathPrefix", "/api/auth", None, "auth"),
    ("Exact", "/.well-known/jwks.json", None, "auth"),
    ("RegularExpression", "^/api/tenants/[^/]+/(analytics|suspend|reactivate)$", None, "admin"),
    ("RegularExpression", "^/api/tenants/[^/]+$", "DELETE", "admin"),
    ("PathPrefix", "/api/tenants", None, "tenants"),
    ("PathPrefix", "/api/collections", None, "admin"),
    ("PathPrefix", "/api/admin", None, "admin"),
    ("Exact", "/api/images/search", None, "search"),
    ("PathPrefix", "/api/images", None, "images"),
    ("PathPrefix", "/static", None, "web"),
    ("Exact", "/", None, "web"),
]


def _prefix_match(prefix: str, path: str) -> bool:
    # Gateway API PathPrefix matches whole path elements: /api/auth matches /api/auth/login,
    # not /api/authx.
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


@lru_cache(maxsize=1)
def _compiled() -> list[tuple[str, str | re.Pattern[str], str | None, str]]:
    return [
        (kind, re.compile(path) if kind == "RegularExpression" else path, method, fn)
        for kind, path, method, fn in ROUTES
    ]


def route(method: str, path: str) -> str | None:
    """The function serving ``method path`` (path without the query), or None (404)."""
    if path.startswith("/events/") or path == "/events":
        return None
    for kind, pattern, want, fn in _compiled():
        if want is not None and want != method:
            continue
        if kind == "Exact":
            ok = path == pattern
        elif kind == "PathPrefix":
            assert isinstance(pattern, str)
            ok = _prefix_match(pattern, path)
        else:
            assert isinstance(pattern, re.Pattern)
            ok = pattern.fullmatch(path) is not None
        if ok:
            return fn
    return None
