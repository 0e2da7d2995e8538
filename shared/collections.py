"""Vector collections (spaces) for operators: list, create, delete — never one in use."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.auth.principal import Principal
from shared.db import Database
from shared.errors import Conflict, InvalidInput, NotFound
from shared.store import model_spaces, tenants

if TYPE_CHECKING:
    from shared.vectors import SpaceInfo, VectorIndex


class CollectionService:
    def __init__(
        self, db: Database, vectors: VectorIndex, *, active_space: tuple[str, int] | None = None
    ):
        self.db, self.vectors = db, vectors
        # (name, dimension) of the vector space new images are indexed into: protected.
        self.active_space = active_space

    def list(self, principal: Principal) -> list[SpaceInfo]:
        principal.require_system_admin()
        return self.vectors.spaces()

    def create(self, principal: Principal, *, name: str, size: int, distance: str) -> None:
        principal.require_system_admin()
        if distance.lower() != "cosine":
            raise InvalidInput(
                "DeepLens vectors are L2-normalised: distance must be Cosine",
                code="unsupported_distance",
            )
        if not 1 <= size <= 8192:
            raise InvalidInput("vectorSize must be between 1 and 8192", code="invalid_size")
        if self.active_space is not None and name == self.active_space[0]:
            if size != self.active_space[1]:
                raise Conflict(
                    f"{name} is the active vector space: its vectors have"
                    f" {self.active_space[1]} dimensions, not {size}",
                    code="collection_active",
                )
        if any(s.name == name for s in self.vectors.spaces()):
            raise Conflict(f"collection {name} exists", code="collection_exists")
        self.vectors.ensure_space(name, size)

    def delete(self, principal: Principal, *, name: str, force: bool) -> None:
        principal.require_system_admin()
        if not any(s.name == name for s in self.vectors.spaces()):
            raise NotFound(f"collection {name} does not exist", code="collection_not_found")
        with self.db.tx() as conn:
            serving = tenants.count_in_space(conn, space=name)
        # Never dropped, even with force: the active space (every sign-up and search needs
        # it) and a space tenants still use (their images would stay "indexed" with no vector).
        if self.active_space is not None and name == self.active_space[0]:
            raise Conflict(
                f"{name} is the active vector space and cannot be deleted",
                code="collection_active",
            )
        if serving:
            raise Conflict(
                f"collection {name} still serves {serving} tenant(s)", code="collection_in_use"
            )
        if not force and any(s.name == name and s.vectors for s in self.vectors.spaces()):
            raise Conflict(
                f"collection {name} still holds vectors; pass force", code="collection_not_empty"
            )
        with self.db.tx() as conn:
            migrating = model_spaces.migrating(conn, space=name)
        if migrating:  # a migration's target or a kept previous space: `deeplens models cleanup`
            raise Conflict(
                f"collection {name} is part of a model migration of {migrating} tenant(s);"
                " use deeplens models cleanup",
                code="collection_in_migration",
            )
        self.vectors.drop_space(name)
