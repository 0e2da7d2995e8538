"""One module per function. Each exposes ``router`` (a FastAPI APIRouter) and may expose
``warm(container)``, run in ``start()`` before the instance reports ready.

Modules are imported only when their function is served, so a service that does not extract
features never imports torch.
"""

from __future__ import annotations

# FUNCTION_TARGET value -> module. The same names are the Knative Services in infra/knative.
FUNCTIONS: dict[str, str] = {
    "auth": "functions.auth",
    "tenants": "functions.tenants",
    "images": "functions.images",
    "search": "functions.search",
    "extract": "functions.extract",
    "process-image": "functions.process_image",
    "index-vector": "functions.index_vector",
    "sweeper": "functions.sweeper",
    "dead-letter": "functions.dead_letter",
    "admin": "functions.admin",
    "web": "functions.web",
}
