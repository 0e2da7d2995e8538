"""Tenants: sign-up (owner, session, bucket and vector space), reads, updates, and the one
tenant lifecycle (suspend, reactivate, delete, purge).

- ``service``: TenantService, every tenant use case;
- ``policy``: slugs, operator-only settings, the tenant's vector space;
- ``resources``: the tenant's bucket and vector space (made at sign-up, removed at purge).
"""

from shared.tenants.policy import OPERATOR_SETTINGS, SLUG_RE, collection_for, slugify
from shared.tenants.resources import TenantResources
from shared.tenants.service import TenantService

__all__ = [
    "OPERATOR_SETTINGS",
    "SLUG_RE",
    "TenantResources",
    "TenantService",
    "collection_for",
    "slugify",
]
