"""Who may deliver events: the event endpoints (``/events/*``) answer the broker only.

The contract between senders and receivers lives here so both sides agree:
- the local broker (``deeplens up``) sends ``sender_headers(settings)`` on every delivery;
- the event routes check the same secret (``DEEPLENS_EVENTS_TOKEN``; in development one is
  generated under the data dir, so every local process of one platform shares it).
On Knative the event services are cluster-local as well (see infra/knative).
"""

from __future__ import annotations

import fnmatch
import hmac
import logging
import os
import secrets
import ssl
from pathlib import Path

import jwt

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
    """True when ``authorization`` carries the event token (constant-time compare), or, with
    ``events_auth = "oidc"``, a valid OIDC token issued for this service's audience."""
    if authorization is None or authorization[:7].lower() != "bearer ":
        return False
    presented = authorization[7:].strip()
    if settings.events_auth == "oidc":
        return _check_oidc(settings, presented)
    token = event_token(settings)
    if token is None:
        return False
    return hmac.compare_digest(presented.encode(), token.encode())


_SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
_jwks: dict[str, jwt.PyJWKClient] = {}


def _jwks_client(url: str) -> jwt.PyJWKClient:
    """One cached JWKS client per URL. In a pod, the cluster's JWKS endpoint wants the pod's
    service-account token and trusts the cluster CA."""
    if url not in _jwks:
        headers: dict[str, str] = {}
        ssl_context = None
        if url.startswith("https://kubernetes.default"):
            if (_SA_DIR / "token").exists():
                headers["Authorization"] = f"Bearer {(_SA_DIR / 'token').read_text().strip()}"
            if (_SA_DIR / "ca.crt").exists():
                ssl_context = ssl.create_default_context(cafile=str(_SA_DIR / "ca.crt"))
        _jwks[url] = jwt.PyJWKClient(
            url, cache_keys=True, lifespan=300, headers=headers, ssl_context=ssl_context
        )
    return _jwks[url]


def _check_oidc(settings: Settings, token: str) -> bool:
    if not settings.events_oidc_audience:
        log.error("events_auth=oidc needs DEEPLENS_EVENTS_OIDC_AUDIENCE: refusing every event")
        return False
    try:
        key = _jwks_client(settings.events_oidc_jwks_url).get_signing_key_from_jwt(token)
        claims = jwt.decode(
            token,
            key.key,
            algorithms=["RS256", "ES256", "EdDSA"],
            audience=settings.events_oidc_audience,
            issuer=settings.events_oidc_issuer,
            options={
                "require": ["exp", "aud", "sub"],
                "verify_iss": bool(settings.events_oidc_issuer),
            },
        )
    except jwt.PyJWTError as exc:
        log.warning("event sender refused: %s", type(exc).__name__)
        return False
    patterns = [p.strip() for p in settings.events_oidc_subjects.split(",") if p.strip()]
    if not any(fnmatch.fnmatchcase(str(claims["sub"]), p) for p in patterns):
        log.warning("event sender refused: subject %s is not an event sender", claims["sub"])
        return False
    return True


def check_internal(settings: Settings, authorization: str | None) -> bool:
    """True when ``authorization`` carries the platform's shared secret: how one function
    calls another's internal route (search by image asks extract to embed the query). Unlike
    ``check_sender`` this never takes an OIDC identity: the secret is the platform's own."""
    if authorization is None or authorization[:7].lower() != "bearer ":
        return False
    token = event_token(settings)
    if token is None:
        return False
    return hmac.compare_digest(authorization[7:].strip().encode(), token.encode())
