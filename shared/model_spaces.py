"""Vector spaces as data: which model and space each tenant searches (its active space), the
other space it also writes (a migration target before cutover, the previous space after it,
kept for rollback until cleanup), and which spaces hold each image's vector.

Model references are ``name:pooling:size``; built-in models come from the registry, operators'
own ONNX encoders from the ``custom_models`` table, fitted calibrations from
``model_calibrations``. Migrations and backfills live in shared/model_migrations.py.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, LiteralString

import psycopg

from shared.config import Settings
from shared.db import Database, execute, fetch_dicts, fetch_one
from shared.errors import InvalidInput, NotFound
from shared.features.registry import MODELS, ModelSpec, model_spec, parse_ref, spec_for
from shared.models import TenantRow

if TYPE_CHECKING:
    from shared.vectors import VectorIndex

log = logging.getLogger(__name__)
SPEC_TTL = 30.0  # seconds a resolved model (and its calibration) is cached


@dataclass
class TenantModels:
    tenant_id: uuid.UUID
    active_model: str
    active_space: str
    other_model: str | None
    other_space: str | None
    other_role: str | None  # target | previous
    started_at: datetime | None
    cutover_at: datetime | None
    updated_at: datetime

    @property
    def spaces(self) -> tuple[str, ...]:
        return (self.active_space,) + ((self.other_space,) if self.other_space else ())


@dataclass(frozen=True)
class WriteTarget:
    spec: ModelSpec
    space: str
    primary: bool


STATE: LiteralString = "SELECT * FROM tenant_models WHERE tenant_id = %(t)s"
ENSURE_PLATFORM: LiteralString = """
INSERT INTO model_platform (id, active_model) VALUES (1, %(m)s) ON CONFLICT (id) DO NOTHING
"""
PLATFORM: LiteralString = "SELECT * FROM model_platform WHERE id = 1"
# A tenant without a row (created before spaces were data, or since the last migration) gets
# one from the platform: its current space is active; a running platform migration's target
# becomes its other space, so its uploads are dual-written from the first.
INIT_TENANT: LiteralString = """
INSERT INTO tenant_models (tenant_id, active_model, active_space, other_model, other_space,
                           other_role, started_at)
VALUES (%(t)s, %(m)s, %(s)s, %(om)s, %(os)s, %(role)s,
        CASE WHEN %(role)s::text IS NULL THEN NULL ELSE now() END)
ON CONFLICT (tenant_id) DO NOTHING
"""
RECORD: LiteralString = """
INSERT INTO image_spaces (image_id, space, tenant_id, model)
VALUES (%(i)s, %(s)s, %(t)s, %(m)s) ON CONFLICT (image_id, space) DO NOTHING
"""
HOLDS: LiteralString = "SELECT 1 AS n FROM image_spaces WHERE image_id = %(i)s AND space = %(s)s"
CUSTOM: LiteralString = "SELECT * FROM custom_models WHERE name = %(n)s"
CALIBRATION: LiteralString = "SELECT raw_at_threshold FROM model_calibrations WHERE model = %(m)s"


def space_for(tenant: TenantRow, spec: ModelSpec) -> str:
    """A tenant's space for a model: the shared one, or its own when its tier isolates it."""
    if tenant.settings.get("isolatedVectors"):
        return f"tenant_{tenant.id}_{spec.space_name}"
    return spec.space_name


class ModelSpaces:
    def __init__(
        self, db: Database, vectors: Callable[[], VectorIndex], settings: Settings
    ) -> None:
        self.db, self._vectors, self.settings = db, vectors, settings
        self._specs: dict[str, ModelSpec] = {}
        self._specs_at = time.monotonic()
        self._lock = threading.Lock()

    # --- models ------------------------------------------------------------------------------
    @property
    def default_ref(self) -> str:
        return spec_for(self.settings.features).ref

    def spec(self, ref: str) -> ModelSpec:
        """The ModelSpec of a reference (built-in or registered), with its calibration:
        the fitted one if ``deeplens eval --model`` stored one, else the registry's, else None
        (similarities are then raw cosine)."""
        if time.monotonic() - self._specs_at > SPEC_TTL:
            self.forget()  # another process may have stored a calibration
        cached = self._specs.get(ref)
        if cached is not None:
            return cached
        name, pooling, size = parse_ref(ref)
        with self.db.one() as conn:
            if name in MODELS:
                spec = model_spec(name, pooling=pooling, input_size=size)
            else:
                rows = fetch_dicts(conn, CUSTOM, {"n": name}, table="custom_models")
                if not rows:
                    raise InvalidInput(
                        f"unknown model {name!r}; built-in: {sorted(MODELS)}, or register"
                        " your own ONNX model",
                        code="unknown_model",
                    )
                spec = custom_spec(rows[0])
                if (pooling and pooling != spec.pooling) or (size and size != spec.input_size):
                    raise InvalidInput(
                        f"{name} is registered as {spec.ref}", code="invalid_model_ref"
                    )
            fitted = fetch_dicts(conn, CALIBRATION, {"m": spec.ref}, table="model_calibrations")
        if fitted:
            spec = replace(spec, calibration=float(fitted[0]["raw_at_threshold"]))
        with self._lock:
            self._specs[ref] = spec
            self._specs[spec.ref] = spec
        return spec

    def in_use(self, spec: ModelSpec) -> bool:
        """Whether the platform serves this model: some tenant's active or other space, the
        platform's models, or a registered ONNX encoder."""
        with self.db.one() as conn:
            return bool(
                fetch_dicts(
                    conn,
                    "SELECT 1 AS n FROM tenant_models WHERE active_model = %(r)s"
                    " OR other_model = %(r)s UNION ALL SELECT 1 FROM model_platform"
                    " WHERE %(r)s IN (active_model, target_model, previous_model)"
                    " UNION ALL SELECT 1 FROM custom_models WHERE name = %(n)s LIMIT 1",
                    {"r": spec.ref, "n": spec.name},
                    table="tenant_models",
                )
            )

    def forget(self) -> None:
        """Drop cached specs (after a calibration is stored or a model registered)."""
        with self._lock:
            self._specs.clear()
            self._specs_at = time.monotonic()

    # --- state -------------------------------------------------------------------------------
    def platform(self, conn: psycopg.Connection[Any]) -> dict[str, Any]:
        execute(conn, ENSURE_PLATFORM, {"m": self.default_ref}, table="model_platform")
        [row] = fetch_dicts(conn, PLATFORM, table="model_platform")
        if row["active_model"] != self.default_ref and row["target_model"] is None:
            log.warning(
                "DEEPLENS_FEATURES__MODEL asks for %s but the platform's vectors are %s:"
                " run `deeplens models migrate --to %s` to switch without losing images",
                self.default_ref,
                row["active_model"],
                self.default_ref,
            )
        return row

    def platform_space(self) -> str:
        """The shared space new tenants start in."""
        with self.db.tx() as conn:
            ref = str(self.platform(conn)["active_model"])
        return self.spec(ref).space_name

    def platform_spec(self) -> ModelSpec:
        with self.db.tx() as conn:
            ref = str(self.platform(conn)["active_model"])
        return self.spec(ref)

    def state(self, tenant_id: uuid.UUID) -> TenantModels:
        """The tenant's spaces (one statement on the hot path once the row exists)."""
        with self.db.one() as conn:
            found = fetch_one(
                conn, STATE, {"t": tenant_id}, table="tenant_models", row=TenantModels
            )
        if found is not None:
            return found
        with self.db.tx() as conn:
            tenant = fetch_one(
                conn,
                "SELECT * FROM tenants WHERE id = %(t)s AND deleted_at IS NULL",
                {"t": tenant_id},
                table="tenants",
                row=TenantRow,
            )
            if tenant is None:
                raise NotFound("tenant not found", code="tenant_not_found")
            plat = self.platform(conn)
            active = self._model_of_space(tenant, str(plat["active_model"]))
            target = plat["target_model"]
            other = self.spec(target) if target else None
            other_space = space_for(tenant, other) if other else None
            execute(
                conn,
                INIT_TENANT,
                {
                    "t": tenant_id,
                    "m": active,
                    "s": tenant.qdrant_collection_name,
                    "om": target,
                    "os": other_space,
                    "role": "target" if target else None,
                },
                table="tenant_models",
            )
            row = fetch_one(conn, STATE, {"t": tenant_id}, table="tenant_models", row=TenantModels)
        assert row is not None
        if other is not None and row.other_space:
            self._vectors().ensure_space(row.other_space, other.dim)
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

    def write_targets(self, tenant_id: uuid.UUID) -> list[WriteTarget]:
        """Where a new vector of this tenant goes: its active space first (the image's
        pipeline vector), then the other space while one is kept (dual-write)."""
        st = self.state(tenant_id)
        out = [WriteTarget(self.spec(st.active_model), st.active_space, True)]
        if st.other_model and st.other_space:
            out.append(WriteTarget(self.spec(st.other_model), st.other_space, False))
        return out

    def holds(self, image_id: uuid.UUID, space: str) -> bool:
        with self.db.one() as conn:
            return bool(fetch_dicts(conn, HOLDS, {"i": image_id, "s": space}, table="image_spaces"))

    def record(self, image_id: uuid.UUID, tenant_id: uuid.UUID, space: str, ref: str) -> bool:
        """Note that ``space`` holds the image's vector (after the upsert). False when the
        image is gone (deleted meanwhile): the caller removes the point again."""
        try:
            with self.db.one() as conn:
                execute(
                    conn,
                    RECORD,
                    {"i": image_id, "s": space, "t": tenant_id, "m": ref},
                    table="image_spaces",
                )
        except psycopg.errors.ForeignKeyViolation:
            return False
        return True

    def item_done(self, backfill_id: uuid.UUID, image_id: uuid.UUID) -> None:
        with self.db.one() as conn:
            execute(
                conn,
                "UPDATE backfill_items SET done_at = now()"
                " WHERE backfill_id = %(b)s AND image_id = %(i)s",
                {"b": backfill_id, "i": image_id},
                table="backfill_items",
            )

    def item_failed(self, backfill_id: uuid.UUID, image_id: uuid.UUID, error: str) -> None:
        with self.db.one() as conn:
            execute(
                conn,
                "UPDATE backfill_items SET failed_at = now(), error = %(e)s"
                " WHERE backfill_id = %(b)s AND image_id = %(i)s",
                {"e": error[:500], "b": backfill_id, "i": image_id},
                table="backfill_items",
            )


def custom_spec(row: dict[str, Any]) -> ModelSpec:
    """The ModelSpec of a registered ONNX encoder (its file's hash is its version, so a new
    file under the same name never shares a space with the old one)."""
    mean, std = tuple(row["mean"]), tuple(row["std"])
    return ModelSpec(
        name=row["name"],
        arch="onnx",
        variant=row["sha256"][:12],
        dim=int(row["dim"]),
        input_size=int(row["input_size"]),
        mean=(float(mean[0]), float(mean[1]), float(mean[2])),
        std=(float(std[0]), float(std[1]), float(std[2])),
        weights_file=None,
        weights_url=None,
        pooling=str(row["pooling"]),
        version=row["sha256"][:8],
        onnx_path=str(row["path"]),
    )
