"""The identity cache: API keys by prefix, users and tenants, dropped on NOTIFY.

While the LISTEN connection is down nothing is cached: every request reads the database.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg

from shared.api_keys import split_key, verify
from shared.auth.keys import Claims, TokenKeys
from shared.auth.principal import Principal
from shared.db import Database
from shared.errors import Unauthorized
from shared.store import api_keys, tenants, users
from shared.store.api_keys import ApiKeyRow
from shared.store.tenants import TenantRow, check_active
from shared.store.users import UserIdentity

log = logging.getLogger(__name__)
T = TypeVar("T")

CHANNEL = "deeplens_identity"
VERIFIED_MAX = 10_000  # verified access tokens remembered per process
# Entries per cached table (keys, users, tenants): unknown API-key prefixes are remembered too
# (a flood of made-up keys costs one query each, once), so the tables are bounded.
CACHE_MAX = 20_000


class NeedsDatabase(Exception):
    """The fast path cannot answer from memory; call again with ``db=True``."""


_MISSING = object()


class IdentityCache:
    def __init__(self, db: Database, keys: Callable[[], TokenKeys], *, listen: bool = True):
        self.db, self._keys = db, keys
        self.lock = threading.Lock()
        self.tenants: dict[uuid.UUID, TenantRow | None] = {}
        self.users: dict[uuid.UUID, UserIdentity | None] = {}
        self.api_keys: dict[str, ApiKeyRow | None] = {}
        self.keys_used: dict[uuid.UUID, float] = {}  # key id -> when last_used_at was written
        self.keys_to_touch: set[uuid.UUID] = set()
        self.verified: dict[str, Claims] = {}  # access token -> its verified claims
        self.epoch = 0
        self.listening = False
        self._stop = threading.Event()
        self._listen = listen

    def wait_listening(self, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while not self.listening and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.listening

    def _cached(self, table: dict[Any, Any], key: Any, load: Callable[[], T], db: bool) -> T:
        with self.lock:
            if self.listening:
                hit = table.get(key, _MISSING)
                if hit is not _MISSING:
                    return hit  # type: ignore[no-any-return]
            epoch = self.epoch
        if not db:
            raise NeedsDatabase
        value = load()
        with self.lock:
            # A change committed while we read would have bumped the epoch: do not keep a
            # value that may predate it.
            if self.listening and self.epoch == epoch:
                if len(table) >= CACHE_MAX:
                    del table[next(iter(table))]  # the oldest entry, not all of them
                table[key] = value
        return value

    def tenant(self, tenant_id: uuid.UUID, *, db: bool = True) -> TenantRow:
        """The tenant, refused unless it exists and is active (404/403)."""

        def load() -> TenantRow | None:
            with self.db.one() as conn:
                return tenants.get(conn, tenant_id=tenant_id)

        return check_active(self._cached(self.tenants, tenant_id, load, db))

    def principal(self, api_key: str | None, token: str | None, *, db: bool = True) -> Principal:
        """Resolve credentials to a principal with current rights (raises 401)."""
        if api_key is not None:
            return self._api_key(api_key, db)
        assert token is not None
        claims = self.verified.get(token)
        if claims is None or claims.exp <= time.time():
            # Signature, algorithm, issuer, audience and expiry; a token seen before skips
            # the signature (same bytes, same answer) until it expires.
            claims = self._keys().verify(token)
            if len(self.verified) >= VERIFIED_MAX:
                self.verified.clear()
            self.verified[token] = claims
        user_id = uuid.UUID(claims.sub)

        def load() -> UserIdentity | None:
            with self.db.one() as conn:
                return users.identity(conn, user_id=user_id)

        user = self._cached(self.users, user_id, load, db)
        if user is None or not user.is_active:
            raise Unauthorized("this account is disabled", code="account_disabled")
        if str(user.tenant_id) != str(claims.tid) and not (
            user.tenant_id is None and not claims.tid
        ):
            raise Unauthorized("this token no longer matches its account", code="invalid_token")
        # The role is the account's current one, not the one the token was issued with.
        return Principal(tenant_id=user.tenant_id, role=user.role, user_id=user_id)

    def _api_key(self, key: str, db: bool) -> Principal:
        prefix = split_key(key)

        def load() -> ApiKeyRow | None:
            with self.db.one() as conn:
                return api_keys.by_prefix(conn, prefix=prefix)

        principal = verify(self._cached(self.api_keys, prefix, load, db), key)
        assert principal.api_key_id is not None
        now = time.monotonic()
        if now - self.keys_used.get(principal.api_key_id, -1e9) > 60:  # once a minute
            with self.lock:
                self.keys_used[principal.api_key_id] = now
                self.keys_to_touch.add(principal.api_key_id)
        return principal

    # --- invalidation -----------------------------------------------------------------------
    def _tenant_changed(self, tenant_id: uuid.UUID) -> None:
        """Called under the lock when a tenant's row changed (the meter resets its refusal)."""

    def _invalidate(self, payload: str) -> None:
        kind, _, key = payload.partition(":")
        with self.lock:
            self.epoch += 1
            try:
                if kind == "tenant":
                    tid = uuid.UUID(key)
                    self.tenants.pop(tid, None)
                    self._tenant_changed(tid)
                elif kind == "user":
                    self.users.pop(uuid.UUID(key), None)
                elif kind == "apikey":
                    self.api_keys.pop(key, None)
                else:
                    self._clear()
            except ValueError:
                self._clear()

    def local_change(self) -> None:
        """A control-plane write just committed in this process: forget what may be stale."""
        with self.lock:
            self.epoch += 1
            self._clear()

    def _clear(self) -> None:
        self.tenants.clear()
        self.users.clear()
        self.api_keys.clear()

    def _listener(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.db.url, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    with self.lock:
                        self.epoch += 1
                        self._clear()
                        self.listening = True
                    while not self._stop.is_set():
                        for n in conn.notifies(timeout=0.5):
                            self._invalidate(n.payload)
            except Exception:  # noqa: BLE001 - fall back to reading the database
                pass
            with self.lock:
                self.listening = False
                self.epoch += 1
                self._clear()
            if not self._stop.is_set():
                log.warning(
                    "identity LISTEN connection lost; reading the database until it is back"
                )
                self._stop.wait(1.0)
