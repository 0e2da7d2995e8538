"""Vector spaces as data: which model and space each tenant searches (its active space), the
other space it also writes (a migration target before cutover, the previous space after it,
kept for rollback until cleanup), and which spaces hold each image's vector.

Model references and their specs: shared/model_catalog.py (``ModelSpaces`` is a catalog too).
The SQL: shared/store/model_spaces.py. Migrations and backfills: shared/model_migrations.py.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg

from shared.config import Settings
from shared.db import Database
from shared.errors import NotFound
from shared.features.registry import MODELS, ModelSpec, model_spec
from shared.model_catalog import ModelCatalog, custom_spec
from shared.models import TenantRow
from shared.store import backfills as backfill_store
from shared.store import model_spaces as store
from shared.store import tenants as tenant_store
from shared.store.model_spaces import PlatformRow, TenantModels

if TYPE_CHECKING:
    from shared.vectors import VectorIndex

__all__ = ["ModelSpaces", "PlatformRow", "TenantModels", "WriteTarget", "custom_spec", "space_for"]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WriteTarget:
    spec: ModelSpec
    space: str
    primary: bool


def space_for(tenant: TenantRow, spec: ModelSpec) -> str:
    """A tenant's space for a model: the shared one, or its own when its tier isolates it."""
    if tenant.settings.get("isolatedVectors"):
        return f"tenant_{tenant.id}_{spec.space_name}"
    return spec.space_name


class ModelSpaces(ModelCatalog):
    def __init__(self, db: Database, vectors: VectorIndex, settings: Settings) -> None:
        # This service is built in every function, most of which never use the vector engine:
        # the adapter opens it on first use.
        super().__init__(db, settings)
        self.vectors = vectors

    # --- the platform ------------------------------------------------------------------------
    def platform(self, conn: psycopg.Connection[Any]) -> PlatformRow:
        """The platform's models, inside the caller's transaction (created on first use)."""
        row = store.platform(conn, default_model=self.default_ref)
        if row.active_model != self.default_ref and row.target_model is None:
            log.warning(
                "DEEPLENS_FEATURES__MODEL asks for %s but the platform's vectors are %s:"
                " run `deeplens models migrate --to %s` to switch without losing images",
                self.default_ref,
                row.active_model,
                self.default_ref,
            )
        return row

    def current_platform(self) -> PlatformRow:
        with self.db.tx() as conn:
            return self.platform(conn)

    def set_platform(
        self, *, active: str | None = None, target: str | None = None, previous: str | None = None
    ) -> None:
        """``active`` None keeps the active model; target and previous are set as given."""
        with self.db.tx() as conn:
            self.platform(conn)
            store.set_platform(conn, active=active, target=target, previous=previous)

    def platform_space(self) -> str:
        """The shared space new tenants start in."""
        return self.platform_spec().space_name

    def platform_spec(self) -> ModelSpec:
        return self.spec(self.current_platform().active_model)

    # --- tenants -----------------------------------------------------------------------------
    def state(self, tenant_id: uuid.UUID) -> TenantModels:
        """The tenant's spaces (one statement on the hot path once the row exists)."""
        with self.db.one() as conn:
            found = store.state(conn, tenant_id=tenant_id)
        if found is not None:
            return found
        with self.db.tx() as conn:
            tenant = tenant_store.get(conn, tenant_id=tenant_id)
            if tenant is None:
                raise NotFound("tenant not found", code="tenant_not_found")
            plat = self.platform(conn)
        # Specs are resolved with no connection held: spec() takes one of its own, and two
        # threads each holding one while waiting for another exhaust a 2-connection pool (the
        # extract process's) until the pool's timeout — every first ingest stalled 30 s.
        active = self._model_of_space(tenant, plat.active_model)
        target = plat.target_model
        other = self.spec(target) if target else None
        with self.db.tx() as conn:  # idempotent: concurrent first calls insert one row
            store.init_state(
                conn,
                tenant_id=tenant_id,
                model=active,
                space=tenant.qdrant_collection_name,
                other_model=target,
                other_space=space_for(tenant, other) if other else None,
            )
            row = store.state(conn, tenant_id=tenant_id)
        assert row is not None
        if other is not None and row.other_space:
            self.vectors.ensure_space(row.other_space, other.dim)
        return row

    def _model_of_space(self, tenant: TenantRow, platform_ref: str) -> str:
        """The model whose vectors a tenant's existing space holds: the platform's, unless
        the space's name says another built-in setting (the model setting was changed before
        spaces were data); a dedicated space is assumed to hold the platform's model."""
        space = tenant.qdrant_collection_name
        if space_for(tenant, self.spec(platform_ref)) == space or not space.startswith("images_"):
            return platform_ref
        for name, base in MODELS.items():
            for pooling in ("avg", "gem"):
                for size in sorted({base.input_size, 224, 240, 256, 288, 320, 384}):
                    spec = model_spec(name, pooling=pooling, input_size=size)
                    if spec.space_name == space:
                        log.warning(
                            "tenant %s holds %s vectors in %s", tenant.slug, spec.ref, space
                        )
                        return spec.ref
        return platform_ref

    def holds_model(self, tenant_id: uuid.UUID, space: str, ref: str | None, name: str) -> bool:
        """Whether an event's claim — vectors of model ``ref`` (or ``name``) for ``space`` —
        is what the tenant's state says that space holds: a vector of another model (even one
        of the same dimension) never enters a space."""
        model = self.state(tenant_id).model_of(space)
        if model is None:
            return False
        spec = self.spec(model)
        return spec.ref == ref if ref is not None else spec.name == name

    def write_targets(self, tenant_id: uuid.UUID) -> list[WriteTarget]:
        """Where a new vector of this tenant goes: its active space first (the image's
        pipeline vector), then the other space while one is kept (dual-write)."""
        st = self.state(tenant_id)
        out = [WriteTarget(self.spec(st.active_model), st.active_space, True)]
        if st.other_model and st.other_space:
            out.append(WriteTarget(self.spec(st.other_model), st.other_space, False))
        return out

    # --- images ------------------------------------------------------------------------------
    def holds(self, image_id: uuid.UUID, space: str) -> bool:
        with self.db.one() as conn:
            return store.holds(conn, image_id=image_id, space=space)

    def record(self, image_id: uuid.UUID, tenant_id: uuid.UUID, space: str, ref: str) -> bool:
        """Note that ``space`` holds the image's vector (after the upsert). False when the
        image is gone (deleted meanwhile): the caller removes the point again."""
        try:
            with self.db.one() as conn:
                store.record(conn, tenant_id=tenant_id, image_id=image_id, space=space, model=ref)
        except psycopg.errors.ForeignKeyViolation:
            return False
        return True

    def item_done(self, backfill_id: uuid.UUID, image_id: uuid.UUID) -> None:
        """A backfill's image is re-embedded (shared/backfill.py)."""
        with self.db.one() as conn:
            backfill_store.item_done(conn, backfill_id=backfill_id, image_id=image_id)

    def item_failed(self, backfill_id: uuid.UUID, image_id: uuid.UUID, error: str) -> None:
        """A backfill's image cannot be re-embedded (a permanent failure, kept with its error)."""
        with self.db.one() as conn:
            backfill_store.item_failed(
                conn, backfill_id=backfill_id, image_id=image_id, error=error
            )
