"""Who may deliver events: the event endpoints (``/events/*``) answer the broker only.

The contract between senders and receivers lives here so both sides agree:
- the local broker (``deeplens up``) sends ``sender_headers(settings)`` on every delivery;
- the event routes check the same secret (``DEEPLENS_EVENTS_TOKEN``; in development one is
  generated under the data dir, so every local process of one platform shares it).
On Knative the event services are cluster-local as well (see infra/knative).
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
from pathlib import Path

from shared.config import Settings

log = logging.getLogger(__name__)
TOKEN_FILE = "events-token"
_dev_tokens: dict[Path, str] = {}  # read once per process: every event request checks it


def dev_token(data_dir: Path) -> str:
    """Load or create the development event token under the data dir (0600)."""
    path = data_dir / "keys" / TOKEN_FILE
    if path in _dev_tokens:
        return _dev_tokens[path]
    if path.exists():
        return _dev_tokens.setdefault(path, path.read_text().strip())
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process of this platform made it first
        return _dev_tokens.setdefault(path, path.read_text().strip())
    with os.fdopen(fd, "w") as fh:
        fh.write(token)
    log.info("generated a development event token at %s", path)
    return _dev_tokens.setdefault(path, token)


def event_token(settings: Settings) -> str | None:
    """The shared secret event senders present; None only in production without one set."""
    if settings.events_token is not None:
        return settings.events_token.get_secret_value()
    if settings.env == "production":
        return None
    return dev_token(settings.data_dir)


def sender_headers(settings: Settings) -> dict[str, str]:
    """Headers a broker adds to every event it delivers."""
    token = event_token(settings)
    return {"authorization": f"Bearer {token}"} if token else {}


def check_sender(settings: Settings, authorization: str | None) -> bool:
    """True when ``authorization`` carries the event token (constant-time compare)."""
    token = event_token(settings)
    if token is None or authorization is None or authorization[:7].lower() != "bearer ":
        return False
    return hmac.compare_digest(authorization[7:].strip().encode(), token.encode())
